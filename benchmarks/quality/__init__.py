"""The pieces of `benchmarks/quality_vs_finetune.py`: the baselines it trains (`baselines`,
with `plateau`'s schedule to convergence), the numbers it derives from a run's JSON
(`summary`) and the tables and plot it writes (`report`). The driver script runs the seeds and
the mu2Net+ onboarding."""
