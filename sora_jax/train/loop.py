"""The training loop: set up from the config, resume from the newest checkpoint, train, log,
evaluate, checkpoint, and stop cleanly on SIGTERM."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import time

import jax
import numpy as np

from sora_jax.data import loader, pipeline
from sora_jax.data.loader import components_config
from sora_jax.data.schema import TASKS
from sora_jax.models.config import SoraConfig
from sora_jax.models.params import count_parameters, model_flops_per_token
from sora_jax.models.sora import SoraModel
from sora_jax.train import optimizer as optim_lib
from sora_jax.train import compile_cache, init_from, xla_cpu
from sora_jax.train.backends import make_backend
from sora_jax.train.checkpoint import Checkpointer, tokenizer_record
from sora_jax.train.errors import ConfigurationError
from sora_jax.train.generated_eval import GeneratedEval
from sora_jax.train.gan import GAN_TASKS, make_gan_parts
from sora_jax.train.mesh import make_mesh
from sora_jax.train.metrics import MetricWriter, summarize
from sora_jax.train.partitioning import rules_from_config
from sora_jax.train.validate import check_config, check_values

log = logging.getLogger(__name__)
CONFIG_FILE = "config.json"
DECODER_TASKS = [i for i, t in enumerate(TASKS) if t != "classify"]


class TrainingAborted(RuntimeError):
    """Non-finite loss or gradients under train.nonfinite="abort" (exit code 3)."""


class _StopFlag:
    """Set by SIGTERM / SIGINT; the loop saves and stops at the next step boundary."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def install(self, signals=(signal.SIGTERM, signal.SIGINT)):
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.signal = signum

    def restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def requested(self) -> bool:
        local = self.signal is not None
        if jax.process_count() == 1:
            return local
        from jax.experimental import multihost_utils  # every process must stop at the same step
        return bool(np.any(multihost_utils.process_allgather(np.asarray(local))))


def _layout(config) -> dict:
    """What the saved data position depends on (a shared position does not depend on the process
    count)."""
    layout = {"num_workers": int(config.data.num_workers), "backend": config.parallel.backend,
              "process_layout": loader.process_layout(config.data)}
    if layout["process_layout"] == "per_process":
        layout["process_count"] = jax.process_count()
    return layout


def _check_resume_layout(ckpt, config):
    saved = None
    for step in reversed(ckpt.steps()):  # the newest readable meta; restore_latest reports the others
        try:
            saved = ckpt.read_meta(step).get("layout", {})
            break
        except Exception:  # noqa: BLE001 - a torn or corrupt checkpoint
            continue
    if saved is None:
        return
    now = _layout(config)
    changed = {k: (saved.get(k), v) for k, v in now.items() if k in saved and saved[k] != v}
    if changed:
        what = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
        raise ConfigurationError(f"cannot resume the checkpoints in {ckpt.directory} exactly: {what}; the data "
                                 f"position depends on them (use the saved values, or a new workdir)")


def _evaluate(backend, state, config, tokenizer, step, writer, gan_eval=None, text_eval=None):
    results = {}
    for name, dataset in loader.eval_datasets(config, tokenizer, process_index=jax.process_index(),
                                              process_count=jax.process_count()).items():
        if gan_eval is not None and name in gan_eval.components:
            continue  # evaluated by sampling below
        total = None
        generating = text_eval is not None and text_eval.wants(name)
        for i, batch in enumerate(dataset):
            if config.train.eval_batches and i >= config.train.eval_batches:
                break
            device_batch = backend.put_batch(batch)
            out = jax.device_get(backend.evaluate(state, device_batch))
            total = out if total is None else jax.tree.map(np.add, total, out)
            if generating and text_eval.wants(name, i):
                text_eval.add(name, backend, state, batch, device_batch)
        for key, value in summarize(total).items():
            results[f"{name}/{key}"] = value
        if generating:
            results.update(text_eval.results(name))
    if gan_eval is not None:
        results.update(gan_eval.evaluate(backend.host_state(state)))
        gan_eval.write_samples(backend.host_state(state), step, writer)
    writer.write(step, results, split="eval")
    return results


def train(config, workdir: str) -> int:
    """Runs (or resumes) the experiment; returns the process exit code."""
    stop = _StopFlag()
    # Pre-emption while setting up (a long restore, tokenizer training) stops before the first
    # step and exits 0; Ctrl-C still interrupts set-up at once. The signal is held, not acted on
    # mid-set-up, so data workers and their shared memory are closed as on any stop (a process
    # whose peer died in set-up waits at the first step's stop check until its launcher kills it).
    stop.install((signal.SIGTERM,))
    try:
        return _train(config, workdir, stop)
    finally:
        stop.restore()


def _train(config, workdir: str, stop: _StopFlag) -> int:
    is_main = jax.process_index() == 0
    check_values(config)
    compile_cache.enable(config.train.compilation_cache_dir, config.train.compilation_cache_max_mb)
    imports = init_from.resolve(config)  # imported parts fix their architecture before the model is built
    model_cfg = SoraConfig.from_dict(config.model)
    mesh = make_mesh(config.mesh.shape)
    model_cfg = xla_cpu.avoid_collective_deadlocks(model_cfg, mesh)
    rules = rules_from_config(config.mesh.rules)
    os.makedirs(workdir, exist_ok=True)
    tokenizer = loader.tokenizer_from_config(config.data, workdir, process_index=jax.process_index())
    check_config(config, model_cfg, tokenizer, mesh, rules)
    init_from.check_tokenizer(imports, tokenizer)
    t = config.train
    spec = loader.example_spec(config.data)
    model = SoraModel(model_cfg)
    schedule = optim_lib.learning_rate_schedule(config.optim, t.num_steps)
    tx = optim_lib.make_optimizer(config.optim, t.num_steps)
    tasks = {entry["task"] for entry in components_config(config.data).values()}
    gan = make_gan_parts(config, model, tasks)
    step_kwargs = dict(microbatches=t.microbatches, z_loss=t.z_loss, nonfinite=t.nonfinite,
                       task_weights=[t.task_weights[name] for name in TASKS],
                       poison_steps=tuple(int(s) for s in t.debug_nan_steps), gan=gan,
                       text_loss=bool(tasks - set(GAN_TASKS)))
    backend = make_backend(config.parallel.backend, model, tx, schedule, spec, mesh, rules, step_kwargs)
    dataset = loader.train_dataset(config, tokenizer, process_index=jax.process_index(),
                                   process_count=jax.process_count())
    ckpt = Checkpointer(workdir, keep=t.keep_checkpoints, keep_every=t.keep_every, async_save=t.async_checkpoints,
                        shared_iterator=loader.process_layout(config.data) == "global")
    try:  # checkpoints that cannot be resumed are refused before any data worker starts
        _check_resume_layout(ckpt, config)
        ckpt.check_fits(backend.abstract_state())
    except BaseException:
        ckpt.close()
        raise
    iterator = iter(dataset)
    try:  # a failure while setting up ends the data workers and their shared memory too
        restored = ckpt.restore_latest(backend.abstract_state(), iterator)
        if restored is not None:
            step, state, _ = restored
            state = backend.place_restored(state)
            log.info("resumed from step %d in %s", step, ckpt.directory)
        else:
            step, state = 0, backend.init(jax.random.key(config.seed), pretrained=init_from.load(imports, model_cfg))
        saved_step = step if restored is not None else None  # the step the newest checkpoint holds
        restored_final = restored is not None and step >= t.num_steps  # a finished run, run again
        writer = MetricWriter(workdir, enabled=is_main, resumed_step=step)
        text_eval = GeneratedEval.create(config, model, tokenizer)
        gan_eval = None
        if gan is not None:
            from sora_jax.train.gan_eval import GANEvaluator
            gan_eval = GANEvaluator(config, gan, tokenizer, workdir, backend)
        writer.truncate_after(step)
        meta = {"config": json.loads(config.to_json_best_effort()), "tokenizer": tokenizer_record(tokenizer),
                "layout": _layout(config)}
        if is_main:
            with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
                json.dump(meta["config"], f, indent=2)
            host = backend.host_state(state)
            counts = count_parameters(host.params)
            if host.gan is not None:
                counts.update(generator=count_parameters(host.gan.g_params)["total"],
                              discriminator=count_parameters(host.gan.d_params)["total"])
            log.info("parameters: %s", counts)

        sync_steps = xla_cpu.sync_every_step()
        base_key = jax.random.key(config.seed)
        stop.install((signal.SIGINT,))
        flops_per_token = model_flops_per_token(backend.host_state(state).params, model_cfg.decoder, spec.decoder_len)
        peak = t.peak_tflops * 1e12 * jax.device_count()
        progress = _progress_bar(t, step, enabled=is_main)
    except BaseException:
        ckpt.close()
        pipeline.close_training_iterator(iterator)
        raise
    pending, window_start, data_wait, ckpt_blocked, total_blocked = [], time.perf_counter(), 0.0, 0.0, 0.0
    exit_code = 0
    try:
        while step < t.num_steps:
            if stop.requested():
                exit_code = 0 if stop.signal in (None, signal.SIGTERM) else 128 + int(stop.signal)
                break
            wait_start = time.perf_counter()
            local = next(iterator)
            data_wait += time.perf_counter() - wait_start
            state, metrics = backend.step(state, backend.put_batch(local), jax.random.fold_in(base_key, step))
            if sync_steps:
                jax.block_until_ready(metrics)
            step += 1
            pending.append(metrics)
            boundary_log = step % t.log_every == 0 or step == t.num_steps
            boundary_ckpt = step % t.checkpoint_every == 0 or step == t.num_steps
            boundary_eval = bool(t.eval_every) and step % t.eval_every == 0 and step != t.num_steps
            boundary_samples = (gan_eval is not None and bool(config.gan.sample_every)
                                and step % config.gan.sample_every == 0)
            if boundary_log or boundary_ckpt:
                values = _flush(pending, step, t.nonfinite)
                elapsed = time.perf_counter() - window_start
                tokens = sum(values.pop("_tokens"), 0.0)
                values.update(steps_per_s=len(pending) / elapsed, tokens_per_s=tokens / elapsed,
                              examples_per_s=values["examples"] / elapsed, data_wait_fraction=data_wait / elapsed,
                              checkpoint_blocked_fraction=ckpt_blocked / elapsed)
                values["model_tflops_per_s"] = flops_per_token * tokens / elapsed / 1e12
                if peak:
                    values["mfu"] = values["model_tflops_per_s"] * 1e12 / peak
                writer.write(step, values)
                progress.update(len(pending))
                figures = _postfix(values, text=bool(tokens))
                progress.set_postfix(figures)
                if is_main and t.progress and progress.disable:  # a log file (SLURM, launchers): a line instead
                    log.info("step %d/%d: %s, %.2f steps/s", step, t.num_steps,
                             ", ".join(f"{k} {v}" for k, v in figures.items()), values["steps_per_s"])
                pending, window_start, data_wait, ckpt_blocked = [], time.perf_counter(), 0.0, 0.0
            if pending and t.nonfinite == "abort" and (boundary_eval or boundary_samples):
                _abort_if_nonfinite(jax.device_get(pending), step)  # evaluate or sample no broken state
            if boundary_eval:
                _evaluate(backend, state, config, tokenizer, step, writer, gan_eval, text_eval)
                window_start = time.perf_counter()
            elif boundary_samples:
                gan_eval.write_samples(backend.host_state(state), step, writer)
                window_start = time.perf_counter()
            if boundary_ckpt:
                save_start = time.perf_counter()
                ckpt.save(step, backend.host_state(state), iterator, meta)
                saved_step = step
                blocked = time.perf_counter() - save_start
                ckpt_blocked += blocked
                total_blocked += blocked
        if step >= t.num_steps and restored_final and _evaluated_already(writer, step):
            log.info("step %d was trained and evaluated already; nothing to do", step)
        elif step >= t.num_steps:
            _evaluate(backend, state, config, tokenizer, step, writer, gan_eval, text_eval)
        else:  # stopped by a signal: save where we are
            if pending:
                _flush(pending, step, t.nonfinite)
            # A signal right after a periodic save (or a resume) finds this step saved already.
            if step != saved_step and step > 0:  # (stopped before the first step: nothing to save)
                ckpt.save(step, backend.host_state(state), iterator, meta, force=True)
            log.info("stopped by signal %s at step %d; %s", stop.signal, step,
                     "checkpoint saved" if step > 0 else "nothing trained, nothing saved")
        ckpt.wait()
    finally:
        progress.close()
        ckpt.close()
        writer.close()
        pipeline.close_training_iterator(iterator)
        local = iterator = None  # their shared memory (worker batches) is unlinked now, not left at exit
    return exit_code


def _flush(pending, step, nonfinite):
    """Sums the pending steps' device metrics on the host; enforces the abort policy."""
    host = jax.device_get(pending)
    if nonfinite == "abort":
        _abort_if_nonfinite(host, step)
    raw = {"task_loss_sum": sum(m["task_loss_sum"] for m in host), "task_count": sum(m["task_count"] for m in host)}
    values = summarize(raw)
    last = host[-1]
    values.update(loss=float(np.mean([m["loss"] for m in host])), grad_norm=float(last["grad_norm"]),
                  learning_rate=float(last["learning_rate"]), nonfinite_skipped=int(last["nonfinite_skipped"]),
                  examples=float(sum(m["examples"] for m in host)),
                  data_skipped=int(sum(m["data_skipped"] for m in host)))
    for key in host[-1]:
        if key.startswith("gan/"):  # the generator and discriminator losses, averaged over the window
            values[key] = float(np.mean([m[key] for m in host]))
    values["_tokens"] = [float(m["task_count"][DECODER_TASKS].sum()) for m in host]
    if not math.isfinite(values["loss"]) and nonfinite == "skip":
        values["loss"] = float("nan")
    return values


def _postfix(values, text: bool) -> dict:
    """The progress bar's figures: the text loss and tokens/s, or for a run without text targets
    (image generation alone) the GAN's losses and examples (images) per second."""
    if text or "gan/g_loss" not in values:
        return {"loss": f"{values['loss']:.4f}", "tok_s": f"{values['tokens_per_s']:.0f}"}
    return {"g_loss": f"{values['gan/g_loss']:.3f}", "d_loss": f"{values['gan/d_loss']:.3f}",
            "img_s": f"{values['examples_per_s']:.1f}"}


def _evaluated_already(writer, step) -> bool:
    """Process 0 reads metrics.jsonl; every process takes its answer (evaluating is collective)."""
    done = jax.process_index() == 0 and writer.has_record(step, "eval")
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        done = bool(multihost_utils.broadcast_one_to_all(np.asarray(done)))
    return done


def _abort_if_nonfinite(host, step):
    """host: the metrics of the steps up to `step`, on the host."""
    first_bad = next((step - len(host) + 1 + i for i, m in enumerate(host) if not bool(m["finite"])), None)
    if first_bad is not None:
        raise TrainingAborted(f"non-finite loss or gradients at step {first_bad} (train.nonfinite='abort'); "
                              f"no checkpoint was written after it")


def _progress_bar(t, start, enabled):
    from tqdm import tqdm
    return tqdm(total=t.num_steps, initial=start, disable=None if enabled and t.progress else True,
                dynamic_ncols=True, file=sys.stderr, unit="step")
