"""`train_model`'s optional early stopping: off by default (the search trains its whole
budget); with `patience` it stops once the validation accuracy stalls and reports the steps
actually trained."""

from __future__ import annotations

import math

import pytest
from mu2net_helpers import random_image_batches

from mu2net.config import get_config
from mu2net.errors import ConfigError
from mu2net.model import build_model, component_names, init_component

CONFIG = get_config("testing")
ARCH = CONFIG.architecture


def train(patience, lr=0.0, validations=5):
    from mu2net.training import Budget, make_optimizer, train_model

    h = {**CONFIG.hparams.defaults(), "num_classes": 5, "adapter_layers": []}
    names = component_names(h)
    params = {n: init_component(n, ARCH, h, i) for i, n in enumerate(names)}
    model = build_model(ARCH, h, params, trainable=names)
    train_ds, val_ds = random_image_batches()
    budget = Budget(16, 2, validations)
    optimizer = make_optimizer({**h, "opt_lr": lr}, budget.total_steps, CONFIG)
    outcome = train_model(model, train_ds, val_ds, budget=budget, optimizer=optimizer,
                          trainable=names, score_fn=lambda q: q, best_start=-math.inf,
                          patience=patience)
    return outcome, budget


def test_patience_stops_when_validation_accuracy_stalls():
    # lr 0: the weights never move, so the second validation equals the first: no strict rise.
    outcome, budget = train(patience=1)
    assert len(outcome.curve) == 2 and outcome.curve[0] == outcome.curve[1]
    assert outcome.steps == 2 * budget.steps_per_validation
    assert outcome.examples == outcome.steps * budget.batch_size < budget.examples
    assert outcome.improved  # the best checkpoint is still retained


def test_without_patience_the_whole_budget_runs():
    outcome, budget = train(patience=None)
    assert len(outcome.curve) == budget.validations
    assert (outcome.steps, outcome.examples) == (budget.total_steps, budget.examples)


def test_patience_must_be_positive():
    with pytest.raises(ConfigError, match="patience"):
        train(patience=0, validations=1)
