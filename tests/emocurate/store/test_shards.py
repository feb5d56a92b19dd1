import pyarrow as pa

from emocurate.store import shards


def test_marker_written_last_and_tmp_cleanup(tmp_path):
    table = pa.table({"a": [1, 2]})
    assert shards.read_shard(tmp_path, "classify", 0) is None
    shards.shard_path(tmp_path, "classify", 0).parent.mkdir(parents=True)
    # a table without its marker (killed between the two writes) does not count as done
    shards.write_parquet_atomic(shards.shard_path(tmp_path, "classify", 0), table)
    assert not shards.is_done(tmp_path, "classify", 0) and shards.read_shard(tmp_path, "classify", 0) is None
    shards.write_shard(tmp_path, "classify", 0, table, {"model": "m"})
    assert shards.read_shard(tmp_path, "classify", 0).equals(table)
    leftover = shards.shard_path(tmp_path, "classify", 1).with_name(".00001.parquet.123.tmp")
    leftover.write_bytes(b"half")
    assert shards.clean_tmp(tmp_path) == 1 and not leftover.exists()
    assert shards.read_stage(tmp_path, "classify", 3).num_rows == 2
