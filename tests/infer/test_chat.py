"""Chat: the history the model sees keeps the newest turns that fit the encoder, and
`generate --task=chat` answers each line of its input until end of input."""

import types

from sora_jax.infer.chat import ChatSession
from tests.infer.test_generate_text import generate
from tests.shared_run import shared_run
from tests.train.test_cli import run


class EchoTasks:
    """Replies "rN" to the N-th request and remembers each input; one token per character."""

    def __init__(self, text_len):
        self.tok = types.SimpleNamespace(encode=lambda s: list(s))
        self.spec = types.SimpleNamespace(text_len=text_len)
        self.inputs = []

    def __call__(self, task, requests, decoding):
        assert task == "chat" and len(requests) == 1
        self.inputs.append(requests[0]["input"])
        return [f"r{len(self.inputs)}"]


def test_history_keeps_the_newest_turns_that_fit():
    tasks = EchoTasks(text_len=14)  # limit 12 characters
    session = ChatSession(tasks, decoding=None)
    assert session.reply("hi") == "r1"
    assert session.reply("yo") == "r2"
    assert tasks.inputs == ["hi", "hi\nr1\nyo"]  # 8 characters: everything fits
    session.reply("what?")
    assert tasks.inputs[-1] == "yo\nr2\nwhat?"  # 11 characters; with "r1" before it, 14 > 12
    session.reply("a very long line indeed")
    assert tasks.inputs[-1] == "a very long line indeed"  # alone, even over the limit (the encoder truncates)
    assert session.history == ["a very long line indeed", "r4"]  # forgotten turns are dropped


def test_chat_command_answers_each_line_until_end_of_input(tmp_path_factory):
    def train(workdir):
        out = run(workdir, "--config.data.name=chat", "--config.data.task=seq2seq", "--config.data.image_size=0",
                  "--config.train.num_steps=10", "--config.train.checkpoint_every=10")
        assert out.returncode == 0, out.stderr[-3000:]
    workdir = shared_run(tmp_path_factory, "chat_run", train)
    out = generate(workdir, "--task=chat", "--max_new_tokens=8", stdin="hello\n\nhow are you?\n")
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(out.stdout.splitlines()) == 2  # one reply per non-empty line; end of input exits
    image = tmp_path_factory.mktemp("image") / "x.png"
    from PIL import Image
    Image.new("RGB", (8, 8)).save(image)
    caption = generate(workdir, "--task=caption", f"--image={image}")
    assert caption.returncode == 2 and "not caption" in caption.stderr, caption.stderr
