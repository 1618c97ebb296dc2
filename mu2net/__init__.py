"""mu2net: the library behind the continually extended multitask ViT (mu2Net+).

All logic lives here (model, mutations, search, training, scoring, store, tasks); it never
imports kfp. `components/` and `pipelines/` are thin KFP wrappers around it.
"""

__version__ = "0.1.0"
