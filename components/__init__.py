"""Thin KFP components, one per stage of a search cycle.

Each `components/<stage>.py` holds one plain function whose body imports `mu2net.steps` and makes
one library call; the glue between KFP artifacts and library objects lives in `mu2net/steps.py`,
which tests call without KFP. `build_components(image)` turns the functions into lightweight
components on the project's image: the image is chosen at compile time (the tag written by
`mu2net compile`), and `install_kfp_package=False` because the image already pins kfp.
"""

from dataclasses import dataclass

from kfp import dsl

# Relative: this package is `components` in a checkout and `mu2net.components` in the wheel.
from .close_and_commit import close_and_commit
from .ingest_task import ingest_task
from .plan_generation import plan_generation
from .report_run import report_run
from .select_children import select_children
from .start_cycle import start_cycle
from .train_child import train_child

STAGES = {
    "ingest": ingest_task,
    "start": start_cycle,
    "plan": plan_generation,
    "train": train_child,
    "select": select_children,
    "commit": close_and_commit,
    "report": report_run,
}


@dataclass(frozen=True)
class Components:
    """The stage components bound to images: `train` on the training image, the light stages
    (which always run on CPU nodes) on the light image."""

    ingest: dsl.base_component.BaseComponent
    start: dsl.base_component.BaseComponent
    plan: dsl.base_component.BaseComponent
    train: dsl.base_component.BaseComponent
    select: dsl.base_component.BaseComponent
    commit: dsl.base_component.BaseComponent
    report: dsl.base_component.BaseComponent


def build_components(image: str, light_image: str | None = None) -> Components:
    """Lightweight components for the given images (light_image defaults to image). Training
    and closing the cycle (its test-split inference) get the training image."""
    built = {}
    for stage, func in STAGES.items():
        base = image if stage in ("train", "commit") else (light_image or image)
        built[stage] = dsl.component(func, base_image=base, install_kfp_package=False)
    return Components(**built)
