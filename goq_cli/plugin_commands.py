"""The click group of `goq`: the built-in commands plus those plugins offer through the
goq_register_commands hook, which `goq --help` lists in a section of their own.

Plugins are loaded only when a name is not a built-in, or when every command is listed (help,
shell completion): a built-in command never pays for them. A broken plugin is one line.
"""

from __future__ import annotations

import os

import click


class PluginGroup(click.Group):
    """A click.Group whose commands are the built-ins, then the plugins' (loaded on demand)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._plugin_commands: dict[str, click.Command] | None = None
        self._problems: list[str] = []

    def plugin_commands(self) -> dict[str, click.Command]:
        """The plugins' commands by name (made once); failures are kept in `_problems`."""
        if self._plugin_commands is None:
            self._plugin_commands = self._load()
        return self._plugin_commands

    def _load(self) -> dict[str, click.Command]:
        import pluggy

        from goq_core import hookspecs
        from goq_core.plugins import command_factories, load_entrypoints_one_by_one

        pm = pluggy.PluginManager("goq")
        pm.add_hookspecs(hookspecs)
        self._problems = load_entrypoints_one_by_one(pm)
        factories, problems = command_factories(pm)
        self._problems += problems
        made: dict[str, click.Command] = {}
        for name, (who, factory) in sorted(factories.items()):
            if name in self.commands:
                self._problems.append(f"plugin {who!r} offers `{name}`, a built-in: ignored")
                continue
            try:
                command = factory()
            except Exception as exc:  # noqa: BLE001 (a plugin's code: one line, go on)
                self._problems.append(f"plugin {who!r} failed to make `{name}`: {exc!r}")
                continue
            if not isinstance(command, click.Command):
                kind = type(command).__name__
                self._problems.append(f"plugin {who!r} made `{name}` a {kind}, not a command")
                continue
            made[name] = command
        return made

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        builtin = super().get_command(ctx, cmd_name)
        if builtin is not None:
            return builtin
        found = self.plugin_commands().get(cmd_name)
        if found is None and self._problems:
            raise click.UsageError(f"No such command {cmd_name!r} ({self._problems[0]})", ctx)
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        return super().list_commands(ctx) + sorted(self.plugin_commands())

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The built-ins under "Commands", then the plugins' under "Plugin commands"; a
        warning line on stderr for each plugin that could not be loaded."""
        builtins = [(n, self.commands[n]) for n in super().list_commands(ctx)]
        plugins = sorted(self.plugin_commands().items())
        if "_GOQ_COMPLETE" not in os.environ:
            for problem in self._problems:
                click.echo(f"goq: warning: {problem}", err=True)
        for title, commands in (("Commands", builtins), ("Plugin commands", plugins)):
            shown = [(n, c) for n, c in commands if not c.hidden]
            if not shown:
                continue
            limit = formatter.width - 6 - max(len(n) for n, _ in shown)
            rows = [(n, c.get_short_help_str(limit)) for n, c in shown]
            with formatter.section(title):
                formatter.write_dl(rows)
