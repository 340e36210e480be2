"""The layout of a local work dir (``fashionrec pipeline run|serve|demo --workdir``), defined once: every part of the
package that reads or writes one asks this class where."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_WORKDIR = Path("work")  # the commands' --workdir default, relative to where they run


@dataclass(frozen=True)
class WorkDir:
    """Paths inside one work dir. Absolute where a server or another process is handed them."""

    root: Path

    @property
    def releases(self) -> str:
        """The local storage root of releases (fashionrec.serving.release): one folder per promoted model version."""
        return str(self.root.resolve() / "releases")

    @property
    def catalog_changes(self) -> Path:
        """The catalogue change log (fashionrec.data.changes): `fashionrec catalog add|remove` write it, the
        transformers apply it."""
        return self.root.resolve() / "catalog_changes"

    @property
    def catalog(self) -> Path:
        """The catalogue `make demo` generates; `fashionrec serve`'s gallery shows it by default."""
        return self.root / "catalog"

    @property
    def deployment_record(self) -> Path:
        """The last pipeline run's serving artifacts and whether it was promoted, for people."""
        return self.root / "deployment.json"

    @property
    def registry_db(self) -> Path:
        """The default MLflow registry (sqlite)."""
        return self.root.resolve() / "mlflow.db"

    @property
    def pipeline_log(self) -> Path:
        """kfp.local's full output of a local pipeline run."""
        return self.root / "pipeline.log"

    @property
    def retraining_log(self) -> Path:
        """The monitoring loop's training run (`fashionrec demo --monitoring`)."""
        return self.root / "retraining.log"

    @property
    def new_product(self) -> Path:
        """Where the demo stages the product it adds live."""
        return self.root / "new_product"

    @property
    def pipeline_root(self) -> Path:
        """kfp.local's pipeline root: every task's outputs."""
        return self.root / "pipeline_root"

    @property
    def request_log(self) -> Path:
        """What `fashionrec serve`'s image queries saw (no photos): `fashionrec monitor` reads it."""
        return self.root.resolve() / "requests.jsonl"

    @property
    def event_log(self) -> Path:
        """Shoppers' feedback events on what `fashionrec serve` answered (impressions, clicks, purchases)."""
        return self.root.resolve() / "events.jsonl"

    @property
    def retraining_state(self) -> Path:
        """When the last triggered retraining started and finished (the cooldown), and its lock while it runs."""
        return self.root / "retraining.json"

    @property
    def experiments(self) -> Path:
        """`fashionrec experiment`'s HTML reports, one per candidate model version."""
        return self.root / "experiments"

    @property
    def serving_state(self) -> Path:
        """Where the servers of a running `fashionrec serve` listen; a pipeline run's deploy step rolls out onto them."""
        return self.root / "serving.json"

    @property
    def serve(self) -> Path:
        """The demo's and the monitoring loop's server folder (logs, the live links)."""
        return self.root / "serve"

    @property
    def monitoring(self) -> Path:
        """`fashionrec monitor`'s drift report and decision."""
        return self.root / "monitoring"

    @property
    def catalog_reports(self) -> Path:
        """The validation reports of `fashionrec catalog add`, one folder per call."""
        return self.root / "catalog_reports"
