"""metrics.jsonl and TensorBoard on resume: what the interrupted run wrote after the resumed step
goes, and a line cut short by a kill does not stop the run."""

import glob
import json
import os
import struct
import time

from tensorboardX.proto import event_pb2

from sora_jax.train.metrics import MetricWriter


def read_events(path):
    """The Event protos of one TensorBoard file (TFRecord: length, crc, data, crc)."""
    events, data = [], open(path, "rb").read()
    while data:
        (length,) = struct.unpack("<Q", data[:8])
        events.append(event_pb2.Event.FromString(data[12:12 + length]))
        data = data[12 + length + 4:]
    return events


def test_a_torn_last_line_is_dropped_and_later_steps_are_truncated(tmp_path, caplog):
    lines = [{"step": s, "split": "train", "loss": 1.0} for s in (2, 4, 6)] + [{"step": 4, "split": "eval"}]
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in lines)
        f.write('{"step": 8, "split": "tra')  # the kill came mid-write
    writer = MetricWriter(str(tmp_path), tensorboard=False)
    writer.truncate_after(4)
    kept = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert [(r["step"], r["split"]) for r in kept] == [(2, "train"), (4, "train"), (4, "eval")]
    assert "dropped 1 line(s) that are not JSON (line 5)" in caplog.text
    writer.write(5, {"loss": 0.5})  # appends on a line of its own
    assert json.loads(open(tmp_path / "metrics.jsonl").read().splitlines()[-1])["step"] == 5
    assert writer.has_record(4, "eval") and not writer.has_record(5, "eval")


def test_a_resumed_writer_tells_tensorboard_to_purge_the_later_steps(tmp_path):
    first = MetricWriter(str(tmp_path))
    for step in (2, 4, 6):
        first.write(step, {"loss": float(step)})
    first.close()
    time.sleep(1.1)  # event files are named by the second they were opened in
    resumed = MetricWriter(str(tmp_path), resumed_step=4)
    resumed.write(5, {"loss": 5.0})
    resumed.close()
    files = sorted(glob.glob(os.path.join(tmp_path, "tb", "events.*")), key=os.path.getmtime)
    assert len(files) == 2
    def starts(path):
        return [e.step for e in read_events(path) if e.HasField("session_log")
                and e.session_log.status == event_pb2.SessionLog.START]
    assert starts(files[1]) == [5]  # TensorBoard drops the earlier file's events from step 5 on
    assert starts(files[0]) == [1]  # a fresh start drops whatever an attempt before it logged
