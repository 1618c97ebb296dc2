import copy
import math

import pytest

from mu2net.errors import SchemaError
from mu2net.schema import (
    ROOT_TASK,
    Component,
    Extension,
    Path,
    SystemVersion,
    SystemView,
    sha256_hex,
)
from mu2net.task_info import TaskInfo


def comp(name, creator="_root", n=4, tag=""):
    blob = sha256_hex(f"{creator}{name}{tag}".encode())
    return Component(id=Component.make_id(creator, name, blob), name=name, creator=creator,
                     shapes={"kernel": (n, 2), "bias": (2,)}, blob=blob)


def root_path():
    return Path(task=ROOT_TASK, components=(comp("embedding"), comp("encoderblock_0"),
                                            comp("encoder_norm")),
                hparams={"num_layers": 1}, method_version="m-abc")


def task_info(name="digits"):
    return TaskInfo(name=name, source="demo:digits", num_classes=3, class_names=("a", "b", "c"),
                    split_sizes={"train": 10, "validation": 2, "test": 2},
                    image_shape=(8, 8, 1), content_hash=sha256_hex(b"x"))


def test_component_round_trip_and_params():
    c = comp("encoderblock_3")
    assert c.num_params == 10
    assert Component.from_dict(c.to_dict()) == c


def test_path_round_trip_is_stable_and_hash_is_content():
    root = root_path()
    path = Path(task="digits", components=root.components[:2] + (comp("head", "digits"),),
                hparams={"num_layers": 1, "_mu_|clone:head": 0.1}, method_version="m-abc",
                parent=root.hash, parent_task=ROOT_TASK, metrics={"validation_accuracy": 0.5})
    again = Path.from_dict(path.to_dict())
    assert again == path and again.hash == path.hash
    other = Path.from_dict({**path.to_dict(), "metrics": {"validation_accuracy": 0.6}})
    assert other.hash != path.hash


def test_task_info_and_version_round_trip():
    info = task_info()
    assert TaskInfo.from_dict(info.to_dict()) == info
    version = SystemVersion(number=3, parent=2, root=root_path().hash,
                            tasks={"digits": root_path().hash}, provenance={"run_id": "r1"})
    assert SystemVersion.from_dict(version.to_dict()) == version


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("task"), "path.task is missing"),
    (lambda d: d.update(hparams=[]), "path.hparams"),
    (lambda d: d["components"][0].update(blob="zz"), "component.blob"),
    (lambda d: d["components"][0]["shapes"].update(kernel=[-1]), "component.shapes"),
    (lambda d: d["components"][0].update(num_params=3), "component.num_params"),
    (lambda d: d.update(schema="mu2net/path/v9"), "path.schema"),
    (lambda d: d["components"][0].update(name="decoder"), "component.name"),
])
def test_invalid_path_documents_name_the_field(mutate, field):
    doc = copy.deepcopy(root_path().to_dict())
    doc["task"] = "digits"
    mutate(doc)
    with pytest.raises(SchemaError, match=field.replace(".", r"\.")):
        Path.from_dict(doc)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(number=True), "system_version.number"),
    (lambda d: d.update(parent=5), "system_version.parent"),
    (lambda d: d["tasks"].update({"bad name!": "0" * 64}), "task name 'bad name!'"),
    (lambda d: d["tasks"].update({"x": "abc"}), r"system_version.tasks\['x'\]"),
])
def test_invalid_versions_name_the_field(mutate, field):
    doc = SystemVersion(number=1, parent=0, root=root_path().hash, tasks={}).to_dict()
    mutate(doc)
    with pytest.raises(SchemaError, match=field):
        SystemVersion.from_dict(doc)


def test_invalid_task_info():
    doc = task_info().to_dict()
    doc["num_classes"] = 1
    doc["class_names"] = ["a"]
    with pytest.raises(SchemaError, match="at least 2 classes"):
        TaskInfo.from_dict(doc)


def test_accounted_params_amortise_shared_components():
    root = root_path()
    head_a, head_b = comp("head", "a", n=1), comp("head", "b", n=1)
    shared = root.components[:2]
    path_a = Path("a", shared + (head_a,), {}, "m")
    path_b = Path("b", shared + (head_b,), {}, "m")
    view = SystemView(SystemVersion(2, 1, root.hash, {"a": path_a.hash, "b": path_b.hash}),
                      root, {"a": path_a, "b": path_b})
    # shared root components: 10 params each, locked by the root (an owner in mu2Net+), a
    # and b -> a third each; own head 4 params.
    assert view.accounted_params(path_a) == pytest.approx(10 / 3 + 10 / 3 + 4)
    # A candidate of a third task reusing them pays a quarter.
    cand = Path("c", shared + (comp("head", "c", n=1),), {}, "m")
    assert view.accounted_params(cand) == pytest.approx(10 / 4 * 2 + 4)
    assert view.total_params() == 10 + 10 + 4 + 4
    # The root's own components count once for it; shared ones split three ways.
    assert math.isclose(view.accounted_params(root), 10 / 3 * 2 + 10)


def test_a_root_component_reused_frozen_costs_half_before_any_task_uses_it():
    root = root_path()
    view = SystemView(SystemVersion(0, None, root.hash, {}), root, {})
    cand = Path("a", root.components[:1] + (comp("head", "a", n=1),), {}, "m")
    # reused root component: the root and the task share it; a clone would cost all 10.
    assert view.accounted_params(cand) == pytest.approx(10 / 2 + 4)
    clone = Path("a", (comp(root.components[0].name, "a"), comp("head", "a", n=1)), {}, "m")
    assert view.accounted_params(clone) == pytest.approx(10 + 4)


def test_extension_round_trip_and_checks():
    path = Path("digits", (comp("head", "digits"),), {}, "m")
    ext = Extension(task="digits", base_version=0, path=path,
                    blob_files={path.components[0].blob: "/tmp/x.npz"}, run_id="r",
                    config_name="testing")
    assert Extension.from_dict(ext.to_dict()) == ext
    assert ext.new_components == list(path.components)
    with pytest.raises(SchemaError, match="does not match"):
        Extension(task="other", base_version=0, path=path, blob_files={}, run_id="r",
                  config_name="testing")
