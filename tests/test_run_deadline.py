"""No silent stall: every compiled pipeline carries a run-level deadline from the config's
budget, and on a cluster that deadline ends pods stuck Pending (an L4 stock-out, a zero
quota), which a pod's own activeDeadlineSeconds never does.

Upstream behaviour relied on (no cluster here; ported in tests/argo_semantics.py):
* kfp 2.17 `dsl.PipelineConfig(active_deadline_seconds=)` writes
  `platforms.kubernetes.pipelineConfig.activeDeadlineSeconds` (kfp/compiler/
  pipeline_spec_builder.py _merge_pipeline_config), and the KFP 2.17.0 backend compiles it
  into the Argo Workflow's `spec.activeDeadlineSeconds` (backend/src/v2/compiler/argocompiler/
  argo.go buildActiveDeadlineSeconds), for runs and recurring runs alike (both compile through
  argocompiler.Compile, backend/src/apiserver/template/v2_template.go).
* The KFP 2.17.0 compiler never sets an Argo template `timeout` (the per-node bound that counts
  Pending time): nothing in backend/src/v2/compiler/argocompiler assigns Template.Timeout, so a
  per-task Pending bound is not reachable through KFP; the workflow deadline is the bound.
* Argo v4.0.5: past the workflow deadline, Pending and Running pods outside exit handlers are
  terminated and their nodes failed (workflow/controller/exec_control.go
  applyExecutionControl); retries stop (operator.go processNodeRetries, "retry exceeded
  workflow deadline").
"""

import dataclasses

import pytest
import yaml
from argo_semantics import (
    pod_active_deadline_exceeded,
    pod_outcome_at,
    strategic_merge,
    workflow_deadline,
)
from kfp import compiler

from mu2net import resources
from mu2net.config import CONFIG_NAMES, TARGETS, get_config
from pipelines.onboard_task import build_pipeline

HOUR = 3600


def compiled_platform(config_name, target, tmp_path):
    out = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline(config_name, target, "mu2net-x:1",
                                               light_image="mu2net-cpu:1"), str(out))
    _, platform = yaml.safe_load_all(out.read_text())
    return platform["platforms"]["kubernetes"]


@pytest.mark.parametrize("config_name,target", [("gpu", "gpu"), ("testing", "cpu")])
def test_the_compiled_pipeline_carries_the_run_deadline(config_name, target, tmp_path):
    platform = compiled_platform(config_name, target, tmp_path)
    deadline = resources.run_deadline_seconds(get_config(config_name), target)
    assert platform["pipelineConfig"] == {"activeDeadlineSeconds": deadline}


def test_the_run_deadline_bounds_the_budget_and_no_more():
    config = get_config("gpu")
    train, commit = resources.timed_pools(config, "gpu")
    light = config.placement.light
    generations = config.search.generations_per_cycle
    deadline = resources.run_deadline_seconds(config, "gpu")
    # every generation's children (in parallel), the commit, every light step's attempts
    floor = generations * train.timeout_s + commit.timeout_s + \
        resources.light_step_count(config) * light.timeout_s * (light.retries + 1)
    assert floor + resources.PENDING_ALLOWANCE_S <= deadline < floor + 3 * HOUR  # + backoffs
    assert 30 * HOUR < deadline < 60 * HOUR  # about two days for four ~6 h generations
    # it follows the budget: a config with twice the training examples gets a longer bound
    longer = config.replace(search=dataclasses.replace(
        config.search,
        examples_between_validations=2 * config.search.examples_between_validations))
    assert resources.run_deadline_seconds(longer, "gpu") > deadline + generations * 4 * HOUR


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("config_name", CONFIG_NAMES)
def test_every_config_and_target_has_a_deadline_kfp_accepts(config_name, target):
    deadline = resources.run_deadline_seconds(get_config(config_name), target)
    assert 0 < deadline <= resources.INT32_MAX  # dsl.PipelineConfig refuses more


def test_a_pod_stuck_pending_ends_at_the_run_deadline_and_not_before(tmp_path):
    platform = compiled_platform("gpu", "gpu", tmp_path)
    deadline_s = platform["pipelineConfig"]["activeDeadlineSeconds"]
    # the Workflow KFP compiles carries it; our controller defaults set no deadline of their
    # own, so the merge (workflow/util/merge.go MergeTo, the workflow wins) keeps it
    defaults = {"spec": {"ttlStrategy": {"secondsAfterCompletion": 3600},
                         "templateDefaults": {"retryStrategy": {"limit": "2"}}}}
    spec = strategic_merge(defaults["spec"], {"activeDeadlineSeconds": deadline_s})
    started = 1_000_000.5
    deadline = workflow_deadline(started, spec["activeDeadlineSeconds"])
    child_timeout = resources.timed_pools(get_config("gpu"), "gpu")[0].timeout_s
    # A child Pending on an L4 stock-out: its own activeDeadlineSeconds never fires ...
    never_scheduled = None
    assert not pod_active_deadline_exceeded(started + 30 * 24 * HOUR, never_scheduled,
                                            child_timeout)
    # ... the run's deadline does, and only once it has passed
    assert pod_outcome_at(deadline - 1, deadline, "Pending") is None
    assert pod_outcome_at(deadline + 1, deadline, "Pending") == \
        "Failed: Step exceeded its deadline"
    # an exit handler (the queue entry's give-back) still runs after it
    assert pod_outcome_at(deadline + 1, deadline, "Pending", on_exit_handler=True) is None
    # without a run deadline (today's main) the Pending child waits forever
    assert pod_outcome_at(started + 365 * 24 * HOUR, workflow_deadline(started, None),
                          "Pending") is None
