"""The `data` section of an experiment config, with every key documented."""

from __future__ import annotations

import ml_collections


def data_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # A bundled dataset (shapes, digits, shakespeare, chat), a file format (jsonl, tsv, text,
    # images, array_record; then train_path / validation_path), or "mixture" (see `mixture`).
    c.name = "shapes"
    c.task = "caption"  # lm, seq2seq, classify, caption, vqa, t2i, inpaint
    c.train_path = ""  # file, directory, glob or comma-separated list (file formats only)
    c.validation_path = ""
    c.text_mode = "line"  # text format: one document per "line" or per "file"
    c.fields = ml_collections.ConfigDict(dict(
        text="text", source="source", target="target", image="image", label="label", caption="caption",
        question="question", answer="answer", qa="qa"))
    c.num_classes = 0  # classify on file data: number of classes (bundled datasets know theirs)
    # Mixture components: name -> {dataset, task, weight[, train_path, validation_path]}.
    c.mixture = ml_collections.ConfigDict()
    c.batch_size = 32  # global: split evenly over processes
    c.eval_batch_size = 32
    c.text_len = 32  # encoder tokens; 0 = no text field
    c.decoder_len = 32  # decoder tokens; 0 = no decoder fields
    c.image_size = 32  # pixels; 0 = no image field
    c.channels = 3
    # "byte", "sentencepiece:PATH", "hf:PATH" (tokenizer.json), a saved tokenizer directory,
    # or "sentencepiece:train" (trained at start-up on the training texts, vocab_size pieces).
    c.tokenizer = "byte"
    # The SentencePiece algorithm "sentencepiece:train" uses: "bpe" or "unigram". On the bundled
    # shapes texts unigram stops at ~60 pieces and spells "above" or "what shape" letter by letter
    # (a median caption is 17 pieces, a question up to 16); BPE gives whole words (9 and 7).
    c.sentencepiece_type = "bpe"
    c.vocab_size = 1024
    c.pack = False  # lm: pack several documents per row (segment ids keep them apart)
    c.random_crop = False  # image augmentation in training
    c.flip = False
    c.mask_kind = "mixed"  # inpainting holes: box, stroke or mixed
    c.on_error = "raise"  # bad records: "raise" (one-line error, exit code 2) or "skip" (counted)
    c.num_workers = 0  # grain worker processes (0: in the training process)
    # Multi-process training: "per_process" reads 1/N of the records in each process (scales; resumes
    # only with the same process count); "global": every process reads the whole global batch and
    # keeps its rows (N times the data work; the same batches, and resumable, for any process count).
    c.process_layout = "per_process"
    c.worker_buffer_size = 2  # batches each worker keeps ready
    c.read_threads = 0  # reader threads per dataset in the consuming process (0: read inline)
    c.prefetch_batches = 0  # batches a background thread keeps ready (0: none)
    # Bundled dataset options.
    # holdout: "red/triangle,blue/circle"; label_kind: shape, count, or object (color and shape of
    # the largest object); max_objects: 1 .. 3 objects per scene; existence_share: in [0, 1], the
    # rate of "is there a C S?" among training VQA questions (0: natural, ~28%; evaluation keeps it).
    c.shapes = ml_collections.ConfigDict(dict(num_train=20000, num_validation=1000, label_kind="shape",
                                              holdout="", seed=0, max_objects=3, existence_share=0.0))
    return c
