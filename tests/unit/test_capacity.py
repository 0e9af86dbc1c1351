"""The capacity model (jobwire.capacity) and `jobwire capacity`: the arithmetic on known unit
costs, that more load never needs less, refusals of bad input, the shipped costs file and where
it came from, and docs/capacity.md being what benchmarks/capacity_check.py renders."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from jobwire import capacity
from jobwire.cli import main

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "src" / "jobwire" / "capacity_costs.json"

# Round unit costs, so that every figure below can be checked by hand.
COSTS = capacity.Costs(
    base_cpu_us_per_second=10_000, base_rss_mib=50, ingest_batch_cpu_us=100, ingest_cpu_us=10,
    receive_batch_cpu_us=20, receive_cpu_us=5,
    transports={"ws": capacity.TransportCosts(1, 10, 20, 200),
                "sse": capacity.TransportCosts(2, 20, 40, 300)},
    redis_batch_cpu_us=50, redis_commit_cpu_us=20, redis_message_cpu_us=2,
    redis_ingress_bytes_per_commit=500, redis_egress_bytes_per_commit=50,
    redis_egress_bytes_per_message=300,
    source={"resultFile": "benchmarks/results/unit_costs-x.json", "commit": "0123456789ab",
            "machine": "a test machine", "measuredAt": "2026-01-01T00:00:00Z"})
CLUSTER = replace(COSTS, receive_batch_cpu_us=0, commit_call_cpu_us=30, claim_cpu_us=40,
                  recent_event_kib=1, redis_claim_cpu_us=8,
                  source={**COSTS.source, "resultFile": "benchmarks/results/unit_costs-c.json"})


def load(**kw: object) -> capacity.Load:
    return capacity.Load(**{"connections": 10_000, "updates_per_second": 1_000, **kw})


def test_usage_adds_up_the_terms() -> None:
    u = capacity.usage(load(broker="redis", batch_size=10), COSTS, instances=2)
    # 100 batches/s; one Redis: both instances receive every event.
    assert u.cpu_terms == pytest.approx({
        "base": 0.02, "connections": 0.01, "ingest": (100 * 100 + 1000 * 10) / 1e6,
        "deliver": 0.01, "receive": 2 * (100 * 20 + 1000 * 5) / 1e6})
    assert u.instance_cpu_cores == pytest.approx(0.074)
    assert u.redis_terms == pytest.approx({"commit": (100 * 50 + 1000 * 20) / 1e6,
                                           "message": 2000 * 2 / 1e6})
    assert u.rss_mib_per_instance == pytest.approx(50 + 5000 * 20 / 1024)
    assert u.client_egress_bytes == 1000 * 200
    assert u.redis_egress_bytes == 1000 * 50 + 2000 * 300
    assert u.redis_ingress_bytes == 1000 * 500


def test_admins_get_every_event_and_their_instances_receive_everything() -> None:
    u = capacity.usage(load(admins=3, transport_mix={"ws": 0.5, "sse": 0.5}), COSTS, 10)
    assert u.delivered_per_second == 4000  # the owner's connection and three admins
    assert u.received_per_second == 4000  # the owner's instance and three admin instances
    assert u.cpu_terms["deliver"] == pytest.approx(4000 * 15 / 1e6)
    assert u.busiest_instance_cpu_cores > u.cpu_per_instance


def test_a_batch_touches_the_expected_number_of_distinct_partitions() -> None:
    assert capacity.partitions_touched(1, 16) == pytest.approx(1)
    assert capacity.partitions_touched(2, 16) == pytest.approx(1 + 15 / 16)  # 2nd: a new one
    assert capacity.partitions_touched(10, 16) == pytest.approx(16 * (1 - (15 / 16) ** 10))
    assert capacity.partitions_touched(1000, 16) == pytest.approx(16)
    assert capacity.partitions_touched(5, 1) == 1


def test_redis_cluster_pays_a_script_call_per_partition_and_a_claim_per_new_job() -> None:
    cluster = load(batch_size=10, updates_per_job=4, partitions=16, recent_events_per_user=20)
    u = capacity.usage(cluster, CLUSTER, instances=2)
    calls = 100 * 16 * (1 - (15 / 16) ** 10)  # 100 batches/s of 10 updates
    assert capacity.commit_calls(cluster) == pytest.approx(calls)
    assert capacity.owner_claims(cluster) == 250  # 1,000 updates/s, 4 per job
    assert u.cpu_terms["cluster client"] == pytest.approx((calls * 30 + 250 * 40) / 1e6)
    assert u.cpu_terms["ingest"] == pytest.approx((100 * 100 + 1000 * 10) / 1e6)
    # One message per event, to the owner's instance only: receive is per event.
    assert u.cpu_terms["receive"] == pytest.approx(1000 * 5 / 1e6)
    assert u.redis_terms == pytest.approx({"commit": (calls * 50 + 1000 * 20) / 1e6,
                                           "claims": 250 * 8 / 1e6,
                                           "message": 1000 * 2 / 1e6})
    # Each of an instance's 5,000 users keeps its 20 recent events (1 KiB each).
    assert u.rss_mib_per_instance == pytest.approx(50 + (5000 * 20 + 5000 * 20) / 1024)
    kept = capacity.usage(replace(cluster, recent_events_per_user=500), CLUSTER, 2)
    assert kept.rss_mib_per_instance == pytest.approx(50 + (5000 * 20 + 5000 * 64) / 1024)
    ingested_by_workers = capacity.usage(replace(cluster, ingest="redis"), CLUSTER, 2)
    assert ingested_by_workers.cpu_terms["cluster client"] == 0


def test_one_redis_keeps_one_call_per_batch_and_no_claims() -> None:
    single = load(broker="redis", batch_size=10)
    assert capacity.commit_calls(single) == 100 and capacity.owner_claims(single) == 0
    u = capacity.usage(single, CLUSTER, 2)
    assert "cluster client" not in u.cpu_terms and "claims" not in u.redis_terms


def test_the_recent_events_kept_are_the_cluster_brokers() -> None:
    from jobwire.broker.cluster import RECENT_PER_USER

    assert capacity.RECENT_EVENTS_PER_USER == RECENT_PER_USER


def test_workers_committing_into_redis_cost_the_instances_no_ingest() -> None:
    assert capacity.usage(load(ingest="redis"), COSTS, 1).cpu_terms["ingest"] == 0


def test_the_plan_is_the_fewest_instances_within_the_budget() -> None:
    heavy = load(connections=120_000, updates_per_second=100_000, batch_size=100)
    plan = capacity.plan(heavy, COSTS)
    assert plan.usage is not None
    n = plan.usage.instances
    assert plan.usage.cpu_per_instance <= 0.7
    assert capacity.usage(heavy, COSTS, n - 1).cpu_per_instance > 0.7
    redis = plan.usage.redis_cpu_cores
    assert plan.shards == math.ceil(redis / 0.7) and plan.nodes == plan.shards
    assert capacity.plan(replace(heavy, replicas=2), COSTS).nodes == 3 * plan.shards


def test_connections_alone_can_set_the_instance_count() -> None:
    plan = capacity.plan(load(connections=1_000_000, updates_per_second=1), COSTS)
    assert plan.usage is not None and plan.usage.instances == 20  # 50,000 per instance


def test_one_redis_that_every_instance_hears_can_be_out_of_reach() -> None:
    plan = capacity.plan(load(updates_per_second=200_000, broker="redis"), COSTS)
    assert plan.usage is None and plan.shards == 0
    assert "every instance receives every event" in plan.warnings[0]


@pytest.mark.parametrize("field", ["connections", "updates_per_second", "admins", "fanout"])
@pytest.mark.parametrize("broker", capacity.BROKERS)
def test_more_load_never_needs_fewer_instances_or_shards(field: str, broker: str) -> None:
    before = None
    for factor in (1, 2, 5, 10, 50, 100, 1000):
        base = {"connections": 1000, "updates_per_second": 100, "admins": 1, "fanout": 1.0}
        kw = {**base, field: type(base[field])(base[field] * factor)}
        plan = capacity.plan(capacity.Load(broker=broker, **kw), COSTS)  # type: ignore[arg-type]
        now = (plan.usage.instances if plan.usage else math.inf, plan.shards or math.inf)
        if before is not None:
            assert now[0] >= before[0] and now[1] >= before[1], (field, factor)
        before = now


def test_costs_file_round_trips_and_refuses_what_is_not_one() -> None:
    assert capacity.costs_from_json(capacity.costs_to_json(COSTS)) == COSTS
    both = capacity.costs_to_json(COSTS, CLUSTER)
    assert capacity.costs_from_json(both, "redis") == COSTS
    assert capacity.costs_from_json(both, "cluster") == CLUSTER
    with pytest.raises(ValueError, match="no Redis Cluster costs"):
        capacity.costs_from_json(capacity.costs_to_json(COSTS), "cluster")
    for bad in ("{", "[]", '{"instance": {}, "redis": {}}',
                capacity.costs_to_json(replace(COSTS, ingest_cpu_us=-1))):
        with pytest.raises(ValueError, match="capacity costs file"):
            capacity.costs_from_json(bad)


@pytest.mark.parametrize("broker", capacity.BROKERS)
def test_the_shipped_costs_name_the_result_file_they_were_measured_in(broker: str) -> None:
    costs = capacity.costs_from_json(SHIPPED.read_text(), broker)
    result = ROOT / costs.source["resultFile"]
    record = json.loads(result.read_text())
    assert record["name"] == "unit_costs" and record["source"]["commit"] == costs.source["commit"]
    assert record["result"].get("broker", "redis") == broker
    measured = record["result"]["costs"]
    assert measured["transports"] == {t: vars(c) for t, c in costs.transports.items()}
    assert measured["redis_commit_cpu_us"] == costs.redis_commit_cpu_us
    assert measured.get("commit_call_cpu_us", 0) == costs.commit_call_cpu_us
    assert set(costs.transports) >= {"ws", "sse"}


def capacity_cli(*argv: str, costs: Path) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "jobwire.cli", "capacity", *argv,
                           "--costs", str(costs)], capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def costs_file(tmp_path: Path) -> Path:
    path = tmp_path / "costs.json"
    path.write_text(capacity.costs_to_json(COSTS, CLUSTER))
    return path


def test_the_command_answers_with_the_plan_its_costs_and_assumptions(costs_file: Path) -> None:
    status, out, _ = capacity_cli("--connections", "1000000", "--updates-per-second", "100000",
                                  "--admins", "50", "--transport-mix", "ws=0.8,sse=0.2",
                                  costs=costs_file)
    assert status == 0
    for text in ("instance processes", "Redis shards", "memory (RSS)", "client egress",
                 "Redis egress", "Redis ingress", "unit_costs-c.json", "assumptions:",
                 "core budget", "admin"):
        assert text in out, text
    status, out, _ = capacity_cli("--connections", "1000", "--updates-per-second", "10",
                                  "--json", costs=costs_file)
    answer = json.loads(out)
    assert status == 0 and answer["feasible"] and answer["instances"] == 1
    assert answer["costs"]["source"]["resultFile"] == "benchmarks/results/unit_costs-c.json"
    assert answer["costs"]["file"] == str(costs_file) and answer["costs"]["broker"] == "cluster"
    status, out, _ = capacity_cli("--connections", "1000", "--updates-per-second", "10",
                                  "--broker", "redis", "--json", costs=costs_file)
    answer = json.loads(out)
    assert answer["costs"]["source"]["resultFile"] == "benchmarks/results/unit_costs-x.json"
    assert "cluster client" not in answer["usage"]["cpu_terms"]


def test_the_command_counts_script_calls_and_claims_on_redis_cluster(costs_file: Path) -> None:
    status, out, _ = capacity_cli("--connections", "1000", "--updates-per-second", "1000",
                                  "--batch-size", "10", "--partitions", "16",
                                  "--updates-per-job", "4", "--json", costs=costs_file)
    usage = json.loads(out)["usage"]
    assert status == 0
    assert usage["cpu_terms"]["cluster client"] == pytest.approx(
        (100 * 16 * (1 - (15 / 16) ** 10) * 30 + 250 * 40) / 1e6)
    assert usage["redis_terms"]["claims"] == pytest.approx(250 * 8 / 1e6)


@pytest.mark.parametrize("argv", [
    ["--connections", "-1", "--updates-per-second", "1"],
    ["--connections", "ten", "--updates-per-second", "1"],
    ["--connections", "1", "--updates-per-second", "nan"],
    ["--connections", "1", "--updates-per-second", "1", "--core-budget", "0"],
    ["--connections", "1", "--updates-per-second", "1", "--core-budget", "1.5"],
    ["--connections", "1", "--updates-per-second", "1", "--transport-mix", "ws=0.5"],
    ["--connections", "1", "--updates-per-second", "1", "--transport-mix", "poll=1"],
    ["--connections", "1", "--updates-per-second", "1", "--batch-size", "0"],
    ["--connections", "1", "--updates-per-second", "1", "--replicas", "-2"],
    ["--connections", "1", "--updates-per-second", "1", "--partitions", "0"],
    ["--connections", "1", "--updates-per-second", "1", "--updates-per-job", "0.5"],
    ["--updates-per-second", "1"],
])
def test_bad_input_is_refused_with_status_2(argv: list[str], costs_file: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    try:
        status = main(["capacity", *argv, "--costs", str(costs_file)])
    except SystemExit as exc:
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err


def test_a_missing_costs_file_is_refused(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capacity", "--connections", "1", "--updates-per-second", "1",
                 "--costs", str(tmp_path / "none.json")]) == 2
    assert "none.json" in capsys.readouterr().err


def load_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "capacity_check", ROOT / "benchmarks" / "capacity_check.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_doc_is_what_capacity_check_renders() -> None:
    doc = ROOT / "docs" / "capacity.md"
    text = doc.read_text()
    for key in ("costs", "million", "check"):
        assert f"<!-- capacity:{key} -->" in text
    assert load_check().render(text) == text, (
        "docs/capacity.md is stale: run "
        "`.venv/bin/python benchmarks/capacity_check.py --render docs/capacity.md`")


def test_calibration_scales_the_unit_cost_prediction_and_fits_rss() -> None:
    check = load_check()

    def run(conns: int, predicted: float, measured: float, rss: float) -> dict[str, object]:
        return {"connections": conns, "instances": 2,
                "predicted": {"instanceCpuCores": predicted, "redisCpuCores": predicted,
                              "rssMiBPerInstance": 0.0},
                "measured": {"instanceCpuCores": measured, "redisCpuCores": measured / 2,
                             "rssMiBPerInstance": rss}}

    loads = [run(1000, 0.1, 0.2, 60), run(3000, 0.3, 0.6, 80), run(2000, 0.2, 0.4, 70)]
    fit = check.compare(loads)
    assert fit["instanceCpuCores"] == pytest.approx(2) and fit["redisCpuCores"] == 1
    assert fit["rssMiBPerConnection"] == pytest.approx(0.02)
    assert loads[2]["errorPercent"]["calibrated"] == {
        "instanceCpuCores": 0.0, "redisCpuCores": 0.0, "rssMiBPerInstance": 0.0}


def test_more_shards_than_partitions_is_told():
    many = capacity.plan(load(connections=1_000_000, updates_per_second=500_000, batch_size=20),
                         CLUSTER)
    assert many.shards > 16
    assert any("partitions" in w for w in many.warnings)
    enough = capacity.plan(load(connections=1_000_000, updates_per_second=500_000,
                                batch_size=20, partitions=1024), CLUSTER)
    assert not any("partitions" in w for w in enough.warnings)
