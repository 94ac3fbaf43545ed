"""MCP servers as tool sources: a real server written with the `mcp` SDK (tests/mcp_weather_server.py),
over stdio and streamable HTTP on 127.0.0.1, and `mcp_servers:` in config.yml."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import write
from mcp.client.stdio import DEFAULT_INHERITED_ENV_VARS

from orchestrai.api import ToolSpec
from orchestrai.config import load_config
from orchestrai.errors import ConfigError, ToolError, ValidationFailed
from orchestrai.tools.mcp import McpServerSettings, McpToolSource, wire_name

SERVER = Path(__file__).resolve().parent / "mcp_weather_server.py"
WIRE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
START_S = 120.0  # two shared cores: a Python server's start is slow, and no test measures time


def stdio(*args: str, name: str = "weather", **settings: Any) -> McpServerSettings:
    return McpServerSettings(name=name, command=sys.executable, args=(str(SERVER), *args), timeout_s=START_S,
                             **settings)


async def tools_of(source: McpToolSource) -> dict[str, ToolSpec]:
    return {tool.name: tool for tool in await source.list_tools()}


# ---------------------------------------------------------------- tools and calls over stdio


def test_tools_are_listed_as_server_dot_tool_with_wire_names_and_schemas() -> None:
    async def scenario() -> dict[str, ToolSpec]:
        source = McpToolSource(stdio())
        try:
            return await tools_of(source)
        finally:
            await source.aclose()

    tools = asyncio.run(scenario())
    long = "weather.a_tool_whose_name_is_long_enough_to_need_a_shorter_wire_name_for_the_providers"
    assert {"weather.forecast", "weather.fail", "weather.crash", "weather.daily.summary", long} <= set(tools)
    forecast = tools["weather.forecast"]
    assert forecast.wire_name == "weather__forecast"
    assert forecast.description == "The weather forecast for a city."
    assert forecast.parameters["type"] == "object" and forecast.parameters["required"] == ["city"]
    assert forecast.parameters["properties"]["city"]["type"] == "string"
    assert tools["weather.daily.summary"].wire_name == "weather__daily_summary"
    assert len(tools[long].wire_name) == 64 and tools[long].wire_name.startswith("weather__a_tool_whose")
    assert all(WIRE.match(tool.wire_name) for tool in tools.values())
    assert len({tool.wire_name for tool in tools.values()}) == len(tools)


def test_wire_names_are_what_providers_accept_and_stay_distinct() -> None:
    assert wire_name("weather", "forecast") == "weather__forecast"
    assert wire_name("files", "read/all.v2") == "files__read_all_v2"
    long = wire_name("s", "x" * 100)
    assert WIRE.match(long) and long == wire_name("s", "x" * 100) and long != wire_name("s", "x" * 101)
    # Two tool names that differ only in characters the wire refuses get two wire names.
    source = McpToolSource(McpServerSettings(name="files", command="unused"))
    specs = source._specs([SimpleNamespace(name=name, description=None, title=None, input_schema={})
                           for name in ("read.all", "read_all")])
    assert [spec.name for spec in specs] == ["files.read.all", "files.read_all"]
    assert specs[0].wire_name == "files__read_all" and specs[1].wire_name != specs[0].wire_name
    assert all(WIRE.match(spec.wire_name) for spec in specs)
    assert specs[0].parameters == {"type": "object", "properties": {}}


def test_a_call_answers_the_structured_content_else_the_text_and_calls_run_at_once() -> None:
    async def scenario() -> tuple[Any, Any, list[Any]]:
        source = McpToolSource(stdio())
        try:
            tools = await tools_of(source)
            forecast = await source.call(tools["weather.forecast"], {"city": "Paris"})
            summary = await source.call(tools["weather.daily.summary"], {"city": "Nice"})
            several = await asyncio.gather(*(source.call(tools["weather.forecast"], {"city": city})
                                             for city in ("Oslo", "Rome", "Lima")))
            return forecast, summary, several
        finally:
            await source.aclose()

    forecast, summary, several = asyncio.run(scenario())
    assert forecast == {"result": "Sunny in Paris, 21 C"}  # structured content
    assert summary == "Nice: morning fog\nNice: sunny afternoon"  # no structured content: the text blocks
    assert several == [{"result": f"Sunny in {city}, 21 C"} for city in ("Oslo", "Rome", "Lima")]


def test_an_error_result_is_a_tool_error_and_the_server_goes_on() -> None:
    async def scenario() -> tuple[list[str], Any]:
        source = McpToolSource(stdio())
        try:
            tools = await tools_of(source)
            errors = []
            for tool, arguments in ((tools["weather.fail"], {"reason": "hail"}),
                                    (tools["weather.forecast"], {"town": "Paris"}),  # the server checks arguments
                                    (ToolSpec("other.tool", "other__tool", "", {}), {})):
                with pytest.raises(ToolError) as caught:
                    await source.call(tool, arguments)
                errors.append(str(caught.value))
            return errors, await source.call(tools["weather.forecast"], {"city": "Bern"})
        finally:
            await source.aclose()

    (failed, bad_arguments, not_ours), after = asyncio.run(scenario())
    assert failed.startswith("weather.fail: ") and "the weather service is down: hail" in failed
    assert bad_arguments.startswith("weather.forecast: ") and "city" in bad_arguments
    assert not_ours == "other.tool: not a tool of MCP server 'weather'"
    assert after == {"result": "Sunny in Bern, 21 C"}


def test_a_server_that_dies_fails_its_call_and_is_restarted_once() -> None:
    async def scenario() -> list[Any]:
        source = McpToolSource(stdio())
        try:
            tools = await tools_of(source)
            environment, crash = tools["weather.environment"], tools["weather.crash"]
            seen: list[Any] = [(await source.call(environment, {}))["pid"]]
            for tool in (crash, environment, crash, environment):
                try:
                    result = await source.call(tool, {})
                    seen.append(result["pid"])
                except ToolError as exc:
                    seen.append(str(exc))
            return seen
        finally:
            await source.aclose()

    first_pid, first_death, second_pid, second_death, after = asyncio.run(scenario())
    assert first_death.startswith("MCP server 'weather' stopped during the call to weather.crash")
    assert "crashing on purpose" in first_death and first_death.endswith("it will be restarted for the next call")
    assert isinstance(second_pid, int) and second_pid != first_pid  # a new process
    assert second_death.endswith("it stopped twice, so its tools are unavailable for the rest of the run")
    assert after == "MCP server 'weather' stopped twice during this run; its tools are unavailable"


def test_a_server_that_does_not_start_is_named_with_its_command_and_stderr() -> None:
    async def scenario() -> list[Exception]:
        errors: list[Exception] = []
        for settings in (stdio("--fail-start", where="config.yml:7"),
                         McpServerSettings(name="gone", command="/nonexistent/mcp-server", args=("--x",))):
            source = McpToolSource(settings)
            for attempt in (source.list_tools, source.list_tools):  # the second says the same, without a restart
                with pytest.raises(ConfigError) as caught:
                    await attempt()
                errors.append(caught.value)
            await source.aclose()
        return errors

    failed, failed_again, missing, _ = asyncio.run(scenario())
    assert failed is failed_again
    command = f"`{sys.executable} {SERVER} --fail-start`"
    assert failed.message == (f"config.yml:7: MCP server 'weather' ({command}) exited before answering; "
                              "its stderr: weather: missing WEATHER_API_KEY | second line")
    assert failed.hint and "mcp_servers.weather" in failed.hint
    assert missing.message == ("MCP server 'gone' (`/nonexistent/mcp-server --x`) did not start: "
                               "/nonexistent/mcp-server was not found")


def test_the_server_gets_a_safe_environment_plus_its_env_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-for-mcp-servers-1234")
    monkeypatch.setenv("SOME_OTHER_VARIABLE", "not-passed")

    async def scenario() -> dict[str, str]:
        source = McpToolSource(stdio(env={"WEATHER_TOKEN": "token-for-the-server"}))
        try:
            tools = await tools_of(source)
            return dict((await source.call(tools["weather.environment"], {}))["variables"])
        finally:
            await source.aclose()

    variables = asyncio.run(scenario())
    assert variables["WEATHER_TOKEN"] == "token-for-the-server"
    assert "OPENAI_API_KEY" not in variables and "SOME_OTHER_VARIABLE" not in variables
    # Python itself may add LC_CTYPE in the child (PEP 538); nothing else beyond the SDK's safe few.
    assert {name for name in variables if not name.startswith("LC_")} <= {*DEFAULT_INHERITED_ENV_VARS,
                                                                          "WEATHER_TOKEN"}
    assert variables["PATH"] == os.environ["PATH"]


def test_aclose_kills_a_server_that_does_not_exit() -> None:
    async def scenario() -> tuple[int, str]:
        source = McpToolSource(stdio())
        tools = await tools_of(source)
        pid = (await source.call(tools["weather.environment"], {}))["pid"]
        await source.call(tools["weather.stubborn"], {})  # ignores SIGTERM, keeps running after stdin closes
        await source.aclose()
        with pytest.raises(ToolError) as caught:
            await source.call(tools["weather.forecast"], {"city": "Paris"})
        return pid, str(caught.value)

    pid, after = asyncio.run(scenario())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert after == "MCP server 'weather' is stopped (the run is ending)"


# ---------------------------------------------------------------- streamable HTTP


@pytest.fixture
def http_server() -> Iterator[str]:
    """The weather server over streamable HTTP on a free port of 127.0.0.1 (it prints the port)."""
    process = subprocess.Popen([sys.executable, str(SERVER), "--http"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield f"http://127.0.0.1:{int(process.stdout.readline())}/mcp"
    finally:
        process.kill()
        process.wait()


def test_a_streamable_http_server_gets_its_headers(http_server: str) -> None:
    async def scenario() -> tuple[dict[str, ToolSpec], Any, dict[str, str]]:
        source = McpToolSource(McpServerSettings(name="web", url=http_server, timeout_s=START_S,
                                                 headers={"Authorization": "Bearer web-token-123456"}))
        try:
            tools = await tools_of(source)
            forecast = await source.call(tools["web.forecast"], {"city": "Oslo"})
            return tools, forecast, (await source.call(tools["web.headers"], {}))["headers"]
        finally:
            await source.aclose()

    tools, forecast, headers = asyncio.run(scenario())
    assert tools["web.forecast"].wire_name == "web__forecast"
    assert forecast == {"result": "Sunny in Oslo, 21 C"}
    assert headers["authorization"] == "Bearer web-token-123456"


def test_an_http_server_that_is_not_there_is_a_config_error() -> None:
    async def scenario() -> ConfigError:
        source = McpToolSource(McpServerSettings(name="web", url="http://127.0.0.1:9/mcp", timeout_s=START_S))
        with pytest.raises(ConfigError) as caught:
            await source.list_tools()
        return caught.value

    error = asyncio.run(scenario())
    assert error.message.startswith("MCP server 'web' (http://127.0.0.1:9/mcp) did not start: ")
    assert error.hint == "check that the server is running at http://127.0.0.1:9/mcp, or fix mcp_servers.web"


# ---------------------------------------------------------------- mcp_servers: in config.yml


def config_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> list[str]:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationFailed) as caught:
        load_config(write(tmp_path / "config.yml", text))
    return [str(problem) for problem in caught.value.problems]


def test_config_errors_are_at_their_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_problems(tmp_path, monkeypatch, """
        mcp_servers:
          weather:
            command: python
            argz: [server.py]
            timeout_s: 0
        """) == ["config.yml:5: mcp_servers.weather.timeout_s: input should be greater than 0 (got 0)",
                 "config.yml:4: unknown key 'mcp_servers.weather.argz'\n  hint: did you mean 'args'?"]
    problems = config_problems(tmp_path, monkeypatch, """
        mcp_servers:
          weather:
            command: python
          both:
            command: python
            url: http://127.0.0.1:1/mcp
          we.ather:
            command: python
          neither:
            timeout_s: 5
          web:
            url: http://127.0.0.1:1/mcp
            env: {A: b}
        """)
    assert problems == [
        "config.yml:6: mcp_servers.both: both command and url are set\n"
        "  hint: keep command for a stdio server, or url for a streamable HTTP one",
        "config.yml:7: mcp_servers: 'we.ather' is not allowed: a server name may contain letters, digits, '_' and "
        "'-' (no '.': it prefixes its tools' names, as in weather.forecast), and starts with a letter or '_'\n"
        "  hint: rename it (and every tool reference to it)",
        "config.yml:9: mcp_servers.neither: neither command nor url is set\n"
        "  hint: add command: (a stdio server) or url: (a streamable HTTP server)",
        "config.yml:13: mcp_servers.web.env: only for a stdio server (one with command:)\n  hint: remove env:",
    ]


def test_config_gives_settings_and_knows_the_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEATHER_TOKEN", "weather-secret-from-env-42")
    monkeypatch.setenv("WEB_TOKEN", "web-secret-from-env-42")
    monkeypatch.chdir(tmp_path)
    config = load_config(write(tmp_path / "config.yml", """
        mcp_servers:
          weather:
            command: python
            args: [server.py, --verbose]
            env: {WEATHER_TOKEN: "${WEATHER_TOKEN}", LOG_LEVEL: debug-everything}
            cwd: servers
          web:
            url: http://127.0.0.1:1/mcp
            headers: {Authorization: "Bearer ${WEB_TOKEN}", X-Literal-Key: literal-header-key}
            timeout_s: 5
          later:
            command: python
            env: {KEY: "${NOT_SET_ANYWHERE}"}
        """))
    weather = config.mcp_server_settings("weather")
    assert (weather.command, weather.args, weather.cwd) == ("python", ("server.py", "--verbose"),
                                                          str(tmp_path / "servers"))
    assert dict(weather.env) == {"WEATHER_TOKEN": "weather-secret-from-env-42", "LOG_LEVEL": "debug-everything"}
    assert weather.where == "config.yml:2"
    web = config.mcp_server_settings("web")
    assert (web.url, dict(web.headers), web.timeout_s) == (
        "http://127.0.0.1:1/mcp", {"Authorization": "Bearer web-secret-from-env-42",
                                   "X-Literal-Key": "literal-header-key"}, 5)
    secrets = config.secrets()
    assert {"weather-secret-from-env-42", "web-secret-from-env-42", "Bearer web-secret-from-env-42",
            "literal-header-key"} <= set(secrets)
    assert "debug-everything" not in secrets  # a value written in the file, not read from the environment
    shown = str(config.redacted())
    assert "secret-from-env" not in shown and "literal-header-key" not in shown
    assert config.redacted()["mcp_servers"]["weather"]["env"] == {"WEATHER_TOKEN": "***", "LOG_LEVEL": "***"}
    # An unset ${VAR} matters only when the server is used.
    with pytest.raises(ConfigError) as caught:
        config.mcp_server_settings("later")
    assert str(caught.value) == ("config.yml:13: MCP server 'later': mcp_servers.later.env.KEY is "
                                 "${NOT_SET_ANYWHERE}, but NOT_SET_ANYWHERE is not set\n"
                                 "  hint: export NOT_SET_ANYWHERE=... before running")
    servers = config.mcp_servers()
    assert servers.names == {"weather", "web", "later"} and "web" in servers and "nope" not in servers
    assert servers.source("web") is servers.source("web")
    with pytest.raises(KeyError):
        servers.source("nope")


def test_a_configured_server_runs_from_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEATHER_TOKEN", "weather-secret-from-env-42")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-for-mcp-servers-1234")
    monkeypatch.chdir(tmp_path)
    config = load_config(write(tmp_path / "config.yml", f"""
        mcp_servers:
          weather:
            command: {sys.executable}
            args: [{SERVER}]
            env: {{WEATHER_TOKEN: "${{WEATHER_TOKEN}}"}}
            timeout_s: {START_S}
        """))

    async def scenario() -> tuple[Any, dict[str, str]]:
        servers = config.mcp_servers()
        source = servers.source("weather")
        try:
            tools = await tools_of(source)
            forecast = await source.call(tools["weather.forecast"], {"city": "Paris"})
            return forecast, (await source.call(tools["weather.environment"], {}))["variables"]
        finally:
            await servers.aclose()

    forecast, variables = asyncio.run(scenario())
    assert forecast == {"result": "Sunny in Paris, 21 C"}
    assert variables["WEATHER_TOKEN"] == "weather-secret-from-env-42" and "OPENAI_API_KEY" not in variables
