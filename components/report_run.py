"""Stage 7: dashboards for the Kubeflow UI (summary, system graph, confusion matrix)."""

from kfp.dsl import HTML, Artifact, ClassificationMetrics, Input, Markdown, Model, Output


def report_run(extension: Input[Model], info: Input[Artifact], store_uri: str, config_json: str,
               config_hash: str, summary: Output[Markdown], system: Output[HTML],
               confusion: Output[ClassificationMetrics]) -> str:
    """Returns the one-line summary also printed by `mu2net onboard`."""
    from mu2net import steps

    out = steps.report_step(extension_dir=extension.path, info_dir=info.path,
                            store_uri=store_uri, config_json=config_json,
                            config_hash=config_hash, markdown_path=summary.path,
                            html_path=system.path)
    confusion.log_confusion_matrix(out["class_names"], out["confusion_matrix"])
    return out["line"]
