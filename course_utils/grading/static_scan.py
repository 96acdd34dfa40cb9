"""Read a submission's code for what reaches past the student's own namespace: notes for a person, never a score.

The grader refuses forbidden computations at PyTorch's dispatcher and runs the
checks in its own process, so a student cannot change a grade from inside a
cell. What such code can still attempt in its own process (switch off the
guard it runs under, patch the comparisons, reach for frames or raw memory) is
named here, with the cell, the line and the alias it went through::

    cell 7, line 3: replaces course_utils.checks.blocked (through alias c)

The scan follows names the way Python binds them: imports with ``as``,
assignments of modules to names (``_np = numpy``, ``m = sys.modules["torch"]``,
``getattr(torch, "nn")``, ``for m in (np, torch)``), from cell to cell in
order, into function bodies and across calls of the student's own functions
(``def patch(m): setattr(m, ...)``; ``patch(np)``). IPython syntax is read
through IPython's own transformer, and code given to ``exec``/``eval`` or to a
cell magic as a literal string is scanned as well. What it cannot follow
(code built at run time) is named as such.

What is named, and what is left alone on purpose, is in ``scan_rules``.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .scan_rules import (ANY_DISPATCH, CODE_ATTRS, DEFAULTS, DISPATCH, DISPATCH_HOOKS, MUTATORS, NAMED, PROTECTED,
                         RUNS_CODE, SHELL, UNKNOWN, container, protected, reference, root, write_text)

__all__ = ["Finding", "scan_sources", "scan_notebook", "suspicious_code"]

_NONE: frozenset[str] = frozenset()  # a name's paths: {"numpy"}, {"torch.nn.functional"}; none for plain values
_TRY_STAR: tuple[type, ...] = (ast.TryStar,) if hasattr(ast, "TryStar") else ()  # except* (Python 3.11)


@dataclass(frozen=True)
class Finding:
    """One thing the scan saw: where (cell index in the notebook, line in the cell) and what."""

    cell: int | None
    line: int
    what: str

    def __str__(self) -> str:
        return f"{'' if self.cell is None else f'cell {self.cell}, '}line {self.line}: {self.what}"


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _chain(node: ast.expr) -> tuple[list[str], ast.expr]:
    """``a.b.c`` -> (["b", "c"], Name a): the attribute names and the expression they hang from."""
    attrs = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    return attrs[::-1], node


def _transform(source: str) -> str:
    """IPython syntax (magics, ``!shell``) as the Python that IPython runs for it."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # without IPython: a magic or shell line does nothing the scan needs to read
        return "\n".join("pass" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    return TransformerManager().transform_cell(source)


class _Scope:
    """Names bound in one scope, each to the paths it may hold; lookups fall back to the enclosing scope.

    The module scope also keeps ``ever``: everything each name held at some point, which is what a
    function body sees (it may run at any time, before or after a rebinding).
    """

    def __init__(self, outer: _Scope | None = None, names: dict[str, frozenset[str]] | None = None,
                 module: _Scope | None = None):
        self.outer, self.names, self.module = outer, dict(names or {}), module
        self.declared_global: set[str] = set()
        self.is_class = False  # a class body: its names are not visible to the methods defined in it
        self.ever: dict[str, frozenset[str]] | None = None if module else {}

    def get(self, name: str) -> frozenset[str] | None:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.names:
                return scope.names[name]
            scope = scope.outer
        return None

    def set(self, name: str, value: frozenset[str]) -> None:
        if name in self.declared_global and self.module is not None:
            self.module.set(name, (self.module.names.get(name) or _NONE) | value)
            return
        self.names[name] = value
        if self.ever is not None:
            self.ever[name] = self.ever.get(name, _NONE) | value

    def copy(self) -> _Scope:
        twin = _Scope(self.outer, self.names, self.module)
        twin.declared_global, twin.ever = self.declared_global, self.ever  # shared on purpose
        twin.is_class = self.is_class
        return twin

    def merge(self, *others: _Scope) -> None:
        """After branches: a name may hold whatever any branch left in it."""
        for other in others:
            for name in set(self.names) | set(other.names):
                self.names[name] = (self.names.get(name) or _NONE) | (other.names.get(name) or _NONE)


@dataclass
class _Function:
    node: ast.FunctionDef | ast.AsyncFunctionDef
    outer: _Scope
    cell: int | None
    line: Callable[[int], int]
    context: str


_PARAM = re.compile(r"param:(\w+):(-?\d+):(\w+)(.*)")


class _Scanner:
    """Walks the cells in order, binding names to what they may hold and noting what reaches past the student."""

    def __init__(self) -> None:
        self.top = _Scope()
        self.stars: list[str] = []                      # modules imported with *
        self.found: dict[Finding, None] = {}            # an ordered set
        self.reasons: set[tuple[int | None, int, str]] = set()
        self.pending: list[_Function] = []              # function bodies, read once the cells are done
        self.param_writes: dict[str, list[tuple[int, str, str, str]]] = {}  # fname -> (index, param, verb, rest)
        self.calls: list[tuple[int | None, int, str, str, list[frozenset[str]], dict[str, frozenset[str]]]] = []
        self.cell: int | None = None
        self.line: Callable[[int], int] = lambda n: n
        self.context = ""

    # --- entry points ---------------------------------------------------------------------------------------
    def cell_code(self, cell: int | None, source: str) -> None:
        self.cell, self.line, self.context = cell, (lambda n: n), ""
        self.code(source, self.top)

    def code(self, source: str, scope: _Scope) -> None:
        try:
            try:
                text = _transform(source)
            except Exception:  # IPython could not read it: read it as Python
                text = source
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            return  # a cell that does not parse runs nothing
        except (RecursionError, MemoryError):  # Python cannot compile it either: the cell runs nothing
            self.note(None, "too deeply nested to scan: review it by hand")
            return
        self.stmts(tree.body, scope)

    def finish(self) -> list[Finding]:
        for _ in range(3):  # a function may bind a global that another function uses: read them again
            ever = dict(self.top.ever or {})
            for fn in self.pending:
                self.function(fn)
            if ever == self.top.ever:
                break
        for cell, line, context, fname, args, kwargs in self.calls:
            for index, param, verb, rest in self.param_writes.get(fname, []):
                given = args[index] if 0 <= index < len(args) else kwargs.get(param, _NONE)
                for origin in sorted(given):
                    if protected(origin + rest):
                        what = write_text(verb, origin + rest, f"through {fname}({param})") + context
                        self.found[Finding(cell, line, what)] = None
        return sorted(self.found, key=lambda f: (-1 if f.cell is None else f.cell, f.line))

    def note(self, node: ast.AST | None, what: str, why: str = "") -> None:
        """Record a finding; with ``why``, one per line and reason (``sys._getframe(1).f_locals`` is one thing)."""
        line = self.line(getattr(node, "lineno", 1)) if node is not None else self.line(1)
        if why:
            if (self.cell, line, why) in self.reasons:
                return
            self.reasons.add((self.cell, line, why))
        self.found[Finding(self.cell, line, what + self.context)] = None

    # --- statements -----------------------------------------------------------------------------------------
    def stmts(self, body: list[ast.stmt], scope: _Scope) -> None:
        for node in body:  # one statement the scan cannot read does not hide the next
            try:
                self.stmt(node, scope)
            except RecursionError:
                self.note(node, "too deeply nested to scan: review it by hand")
            except Exception as err:  # a shape of code this scan does not know: say so rather than stop the grader
                self.note(node, f"could not be scanned ({type(err).__name__}): review it by hand")

    def stmt(self, node: ast.stmt, scope: _Scope) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            self.imports(node, scope)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for expr in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
                if expr is not None:
                    self.expr(expr, scope)
            if node.name in DISPATCH_HOOKS:
                self.note(node, f"defines {node.name} ({DISPATCH})")
            self.pending.append(_Function(node, scope, self.cell, self.line, self.context))
            scope.set(node.name, frozenset({f"def:{node.name}"}))
        elif isinstance(node, ast.ClassDef):
            for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
                self.expr(expr, scope)
            body = _Scope(scope, module=scope.module or scope)
            body.is_class = True
            self.stmts(node.body, body)
            scope.set(node.name, _NONE)
        elif isinstance(node, ast.Assign):
            self.expr(node.value, scope)
            for target in node.targets:
                self.target(target, scope, node.value)
        elif isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.expr(node.value, scope)
                self.target(node.target, scope, node.value)
        elif isinstance(node, ast.AugAssign):
            self.expr(node.value, scope)
            self.target(node.target, scope, None, "changes")
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                self.target(target, scope, None, "deletes")
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            self.expr(node.iter if isinstance(node, (ast.For, ast.AsyncFor)) else node.test, scope)
            for _ in range(2):  # twice: what one iteration binds, the next one sees
                before = scope.copy()
                if isinstance(node, (ast.For, ast.AsyncFor)):
                    self.loop_target(node.target, node.iter, scope)
                self.stmts(node.body, scope)
                scope.merge(before)
            self.stmts(node.orelse, scope)
        elif isinstance(node, ast.If):
            self.expr(node.test, scope)
            other = scope.copy()
            self.stmts(node.body, scope)
            self.stmts(node.orelse, other)
            scope.merge(other)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                self.expr(item.context_expr, scope)
                if item.optional_vars is not None:
                    self.target(item.optional_vars, scope, None)
            self.stmts(node.body, scope)
        elif isinstance(node, (ast.Try, *_TRY_STAR)):
            self.try_block(node, scope)
        elif isinstance(node, ast.Global):
            scope.declared_global.update(node.names)
        else:  # expression statements, return, raise, assert, match, ...
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):
                    self.expr(child, scope)
                elif isinstance(child, ast.stmt):
                    self.stmt(child, scope)
                elif isinstance(child, ast.match_case):
                    if child.guard is not None:
                        self.expr(child.guard, scope)
                    self.stmts(child.body, scope)

    def try_block(self, node: Any, scope: _Scope) -> None:
        """try/except(*): a handler may start from any point of the body; afterwards, any branch's names."""
        before = scope.copy()
        self.stmts(node.body, scope)
        branches = []
        for handler in node.handlers:
            branch = before.copy()
            branch.merge(scope)
            if handler.type is not None:
                self.expr(handler.type, branch)
            if handler.name:
                branch.set(handler.name, _NONE)
            self.stmts(handler.body, branch)
            branches.append(branch)
        self.stmts(node.orelse, scope)
        scope.merge(*branches)
        self.stmts(node.finalbody, scope)

    def imports(self, node: ast.Import | ast.ImportFrom, scope: _Scope) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.referenced(node, alias.name, "imports")
                package = alias.name.split(".")[0]  # `import a.b` binds a
                scope.set(alias.asname or package, frozenset({alias.name if alias.asname else package}))
            return
        module = node.module or ""
        for alias in node.names:
            if node.level:  # relative: none of the course's modules
                scope.set(alias.asname or alias.name, _NONE)
            elif alias.name == "*":
                self.stars.append(module)
                self.referenced(node, module, "imports")
            else:
                self.referenced(node, f"{module}.{alias.name}", "imports")
                scope.set(alias.asname or alias.name, frozenset({f"{module}.{alias.name}"}))

    def function(self, fn: _Function) -> None:
        node, saved = fn.node, (self.cell, self.line, self.context, self.pending)
        self.cell, self.line, self.context, self.pending = fn.cell, fn.line, fn.context, []
        outer = fn.outer
        while outer.is_class and outer.outer is not None:
            outer = outer.outer
        if outer.ever is not None:  # a module-level function or method sees whatever a global ever held
            view = _Scope(module=outer)
            view.names = outer.ever
            outer = view
        positional = [*node.args.posonlyargs, *node.args.args]
        params = {a.arg: frozenset({f"param:{node.name}:{i}:{a.arg}"}) for i, a in enumerate(positional)}
        params.update({a.arg: frozenset({f"param:{node.name}:-1:{a.arg}"}) for a in node.args.kwonlyargs})
        params.update({a.arg: _NONE for a in (node.args.vararg, node.args.kwarg) if a is not None})
        scope = _Scope(outer, params, module=fn.outer.module or fn.outer)
        self.stmts(node.body, scope)
        for inner in self.pending:  # nested functions, with this body's names as it left them
            self.function(inner)
        self.cell, self.line, self.context, self.pending = saved

    # --- what a statement writes ----------------------------------------------------------------------------
    def target(self, node: ast.expr, scope: _Scope, value: ast.expr | None, verb: str = "replaces") -> None:
        if isinstance(node, ast.Name):
            scope.set(node.id, self.resolve(value, scope) if value is not None and verb == "replaces" else _NONE)
        elif isinstance(node, (ast.Tuple, ast.List)):
            values: list[ast.expr | None] = [None] * len(node.elts)
            if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(node.elts) \
                    and not any(isinstance(e, ast.Starred) for e in node.elts):
                values = list(value.elts)
            for part, given in zip(node.elts, values, strict=True):
                self.target(part, scope, given, verb)
        elif isinstance(node, ast.Starred):
            self.target(node.value, scope, None, verb)
        elif isinstance(node, ast.Attribute):
            flagged = False
            for path in sorted(self.resolve(node.value, scope)):
                flagged |= self.write(node, verb, f"{path}.{node.attr}", self.how(node.value, path))
            if node.attr in CODE_ATTRS and not flagged:
                self.note(node, f"{verb} {node.attr} of {_short(node.value)}")
                flagged = True
            self.expr(node.value, scope, quiet=flagged)
        elif isinstance(node, ast.Subscript):
            key = _literal(node.slice)
            for path in sorted(self.resolve(node.value, scope)):
                if path.endswith(".__dict__") or path == "builtins":
                    module = path.removesuffix(".__dict__")
                    self.write(node, verb, f"{module}.{key or '<computed>'}", f"through {_short(node.value)}")
                elif path in ("builtins.globals()", "builtins.locals()") and key and verb == "replaces":
                    scope.set(key, self.resolve(value, scope) if value is not None else _NONE)
                else:
                    self.write(node, verb, f"{path}[{key!r}]" if key else f"{path}[...]", self.how(node.value, path))
            self.expr(node.value, scope)
            self.expr(node.slice, scope)

    def loop_target(self, node: ast.expr, iterable: ast.expr, scope: _Scope) -> None:
        """Bind a loop's names to what the loop may hand them: the items of a literal, or any module."""
        items = iterable.elts if isinstance(iterable, (ast.Tuple, ast.List, ast.Set)) else None
        if items is None:
            inner: ast.expr | None = iterable
            while isinstance(inner, ast.Call):  # sys.modules.values(), list(sys.modules.items()), ...
                inner = inner.func.value if isinstance(inner.func, ast.Attribute) else \
                    inner.args[0] if inner.args else None
            modules = inner is not None and "sys.modules" in self.resolve(inner, scope)
            for name in ast.walk(node):
                if isinstance(name, ast.Name):
                    scope.set(name.id, frozenset({UNKNOWN}) if modules else _NONE)
            if not isinstance(node, (ast.Name, ast.Tuple, ast.List)):
                self.target(node, scope, None)
        elif isinstance(node, ast.Name):
            scope.set(node.id, frozenset().union(*(self.resolve(item, scope) for item in items)))
        elif isinstance(node, (ast.Tuple, ast.List)):
            for i, part in enumerate(node.elts):
                got = [self.resolve(item.elts[i], scope) for item in items
                       if isinstance(item, (ast.Tuple, ast.List)) and len(item.elts) == len(node.elts)]
                if isinstance(part, ast.Name):
                    scope.set(part.id, frozenset().union(*got))
                else:
                    self.target(part, scope, None)
        else:
            self.target(node, scope, None)

    def write(self, node: ast.AST, verb: str, path: str, how: str = "") -> bool:
        """Note a write to ``path`` if it lands in a protected module; a function's parameter waits for its calls."""
        param = _PARAM.fullmatch(path)
        if param:
            fname, index, name, rest = param.groups()
            self.param_writes.setdefault(fname, []).append((int(index), name, verb, rest))
            return True
        if not protected(path):
            return False
        self.note(node, write_text(verb, path, how))
        return True

    def attr_write(self, node: ast.Call, owner: ast.expr, name: ast.expr | None, scope: _Scope, verb: str,
                   how: str) -> None:
        attr = _literal(name) or "<computed>"
        for path in sorted(self.resolve(owner, scope)):
            self.write(node, verb, f"{path}.{attr}", how)

    # --- expressions ----------------------------------------------------------------------------------------
    def expr(self, node: ast.expr, scope: _Scope, quiet: bool = False) -> None:
        if isinstance(node, ast.Attribute):
            attrs, base = _chain(node)
            if not quiet:
                self.chain(node, attrs, base, scope)
            if not isinstance(base, ast.Name):
                self.expr(base, scope)
            return
        if isinstance(node, ast.Lambda):
            for default in [*node.args.defaults, *node.args.kw_defaults]:
                if default is not None:
                    self.expr(default, scope)
            args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs, node.args.vararg, node.args.kwarg]
            self.expr(node.body, _Scope(scope, {a.arg: _NONE for a in args if a is not None}, scope.module or scope))
            return
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            inner = _Scope(scope, module=scope.module or scope)
            for gen in node.generators:
                self.expr(gen.iter, inner)
                self.loop_target(gen.target, gen.iter, inner)
                for condition in gen.ifs:
                    self.expr(condition, inner)
            for part in ((node.key, node.value) if isinstance(node, ast.DictComp) else (node.elt,)):
                self.expr(part, inner)
            return
        if isinstance(node, ast.NamedExpr):
            self.expr(node.value, scope)
            scope.set(node.target.id, self.resolve(node.value, scope))
            return
        if isinstance(node, ast.Call):
            self.call(node, scope)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.expr(child, scope)
            elif isinstance(child, ast.keyword):
                self.expr(child.value, scope)

    def chain(self, node: ast.Attribute, attrs: list[str], base: ast.expr, scope: _Scope) -> None:
        """A reference such as ``c.guard.Guard`` or ``gc.get_referrers``: name it if it reaches past the student."""
        for path in sorted(self.resolve(node, scope)):
            why = reference(path)
            if why:
                how, shown = self.how(node, path), _short(node) if root(path) == UNKNOWN else path
                self.note(node, f"uses {shown} ({why}{', ' + how if how else ''})", why)
                return
        for attr in attrs:  # whatever it hangs from
            why = NAMED.get(attr) or (DISPATCH if ANY_DISPATCH.fullmatch(attr) else None)
            if why:
                self.note(node, f"uses {_short(node)} ({why})", why)
                return

    def referenced(self, node: ast.AST, path: str, verb: str) -> None:
        why = reference(path)
        if why:
            self.note(node, f"{verb} {path} ({why})")

    def call(self, node: ast.Call, scope: _Scope) -> None:
        args = node.args
        for callee in sorted(self.resolve(node.func, scope)):
            name = callee.rsplit(".", 1)[-1]
            if callee in ("builtins.setattr", "builtins.delattr") and args:
                self.attr_write(node, args[0], args[1] if len(args) > 1 else None, scope,
                                "replaces" if name == "setattr" else "deletes", f"through {name} on {_short(args[0])}")
            elif name in ("__setattr__", "__delattr__"):
                verb, owner = ("replaces" if name == "__setattr__" else "deletes"), callee.rsplit(".", 1)[0]
                if owner in ("builtins.object", "builtins.type", "types.ModuleType") and args:
                    self.attr_write(node, args[0], args[1] if len(args) > 1 else None, scope, verb,
                                    f"through {_short(node.func)}")
                elif isinstance(node.func, ast.Attribute):
                    self.attr_write(node, node.func.value, args[0] if args else None, scope, verb,
                                    f"through {_short(node.func)}")
            elif callee in ("importlib.reload", "imp.reload") and args:
                how = self.how(node.func, callee)
                for reloaded in sorted(self.resolve(args[0], scope)) or [_short(args[0])]:
                    self.note(node, f"reloads {reloaded} ({callee}{', ' + how if how else ''})")
            elif callee in ("builtins.__import__", "importlib.import_module", "importlib.__import__"):
                module = _literal(args[0]) if args else None
                if module is None:
                    self.note(node, f"imports a module by a computed name ({callee})")
                else:
                    self.referenced(node, module, "imports")
            elif callee in RUNS_CODE or callee.startswith(SHELL + "."):
                self.runs_code(node, callee, scope)
            elif name in MUTATORS and isinstance(node.func, ast.Attribute):
                owner = callee.rsplit(".", 1)[0]
                how = self.how(node.func.value, owner)
                if container(owner):
                    self.write(node, "changes", owner, f"with {name}(), {how}" if how else f"with {name}()")
            elif callee.endswith(("mock.patch", "mock.patch.object", "mock.patch.dict", "mock.patch.multiple")) \
                    and args:
                target = _literal(args[0])
                paths = {target} if target else {f"{p}.{_literal(args[1]) or '<computed>'}" if name == "object" else p
                                                 for p in self.resolve(args[0], scope)}
                for path in sorted(paths):
                    self.write(node, "replaces", path, f"through {callee}")
            elif callee == "functools.partial" and len(args) > 1 and \
                    self.resolve(args[0], scope) & {"builtins.setattr", "builtins.delattr"}:
                self.attr_write(node, args[1], args[2] if len(args) > 2 else None, scope, "replaces",
                                "through functools.partial(setattr, ...)")
            elif callee.startswith("def:"):
                self.calls.append((self.cell, self.line(node.lineno), self.context, callee[4:],
                                   [self.resolve(a, scope) for a in args],
                                   {k.arg: self.resolve(k.value, scope) for k in node.keywords if k.arg}))

    def runs_code(self, node: ast.Call, callee: str, scope: _Scope) -> None:
        """exec/eval/compile and IPython's run_* with a literal string: scan that code too; otherwise say so."""
        name, args, here = callee.rsplit(".", 1)[-1], node.args, self.line(node.lineno)
        if name == "run_cell_magic":  # %%capture etc.: the body, on the lines after the magic
            body = _literal(args[2]) if len(args) > 2 else None
            if body is not None:
                self.nested(body, scope, lambda n: here + n, self.context)
            return
        if name == "run_line_magic":  # %time <statement>, %matplotlib inline, ...
            line = _literal(args[1]) if len(args) > 1 else None
            if line is not None:
                self.nested(line, scope, lambda n: here, self.context)
            return
        if callee.startswith(SHELL + ".") and name not in ("run_cell", "ex", "ev", "run_code", "run_source"):
            return
        code = _literal(args[0]) if args else None
        if code is None:
            self.note(node, f"runs code built at run time ({_short(node.func)}): this scan cannot read it")
        else:
            self.nested(code, scope, lambda n: here, f"{self.context} (in code given to {_short(node.func)})")

    def nested(self, source: str, scope: _Scope, line: Callable[[int], int], context: str) -> None:
        saved = self.line, self.context
        self.line, self.context = line, context
        try:
            self.code(source, scope)
        finally:
            self.line, self.context = saved

    # --- what a name or an expression may hold --------------------------------------------------------------
    def resolve(self, node: ast.expr | None, scope: _Scope) -> frozenset[str]:
        if isinstance(node, ast.Name):
            got = scope.get(node.id)
            if got is not None:
                return got
            if node.id in DEFAULTS or node.id in PROTECTED:  # bound by a released cell, or a NameError
                return frozenset({DEFAULTS.get(node.id, node.id)})
            if hasattr(builtins, node.id):
                return frozenset({f"builtins.{node.id}"})
            return frozenset(f"{module}.{node.id}" for module in self.stars)
        if isinstance(node, ast.Attribute):
            return frozenset(f"{path}.{node.attr}" for path in self.resolve(node.value, scope))
        if isinstance(node, ast.NamedExpr):
            return self.resolve(node.value, scope)
        if isinstance(node, ast.IfExp):
            return self.resolve(node.body, scope) | self.resolve(node.orelse, scope)
        if isinstance(node, ast.BoolOp):
            return frozenset().union(*(self.resolve(v, scope) for v in node.values))
        if isinstance(node, ast.Subscript):
            key, out = _literal(node.slice), set()
            for path in self.resolve(node.value, scope):
                if path == "sys.modules":
                    out.add(key or UNKNOWN)
                elif (path.endswith(".__dict__") or path == "builtins") and key:
                    out.add(f"{path.removesuffix('.__dict__')}.{key}")
                elif path in ("builtins.globals()", "builtins.locals()") and key:
                    out |= self.resolve(ast.Name(id=key, ctx=ast.Load()), scope)
            return frozenset(out)
        if isinstance(node, ast.Call):
            return self.returns(node, scope)
        return _NONE

    def returns(self, node: ast.Call, scope: _Scope) -> frozenset[str]:
        """What a call hands back, where that is a module or one of its attributes."""
        args, out = node.args, set()
        first = _literal(args[0]) if args else None
        for callee in self.resolve(node.func, scope):
            if callee in ("builtins.__import__", "importlib.import_module", "importlib.__import__"):
                fromlist = len(args) > 3 or any(k.arg == "fromlist" for k in node.keywords)
                out.add(UNKNOWN if first is None else first if callee.endswith("import_module") or fromlist
                        else first.split(".")[0])
            elif callee == "sys.modules.get" and args:
                out.add(first or UNKNOWN)
            elif callee == "builtins.getattr" and len(args) > 1:
                out |= {f"{p}.{_literal(args[1]) or '<computed>'}" for p in self.resolve(args[0], scope)}
            elif callee == "builtins.vars" and args:
                out |= {f"{p}.__dict__" for p in self.resolve(args[0], scope)}
            elif callee in ("builtins.globals", "builtins.locals"):
                out.add(callee + "()")
            elif callee == "IPython.get_ipython":
                out.add(SHELL)
            elif callee in ("importlib.reload", "imp.reload") and args:
                out |= self.resolve(args[0], scope)
        return frozenset(out)

    @staticmethod
    def how(node: ast.expr, path: str) -> str:
        """How an expression reached ``path``: "" when it names it plainly, else the alias or the expression."""
        text = ast.unparse(node)
        if text == path or root(path) == UNKNOWN:
            return ""
        _, base = _chain(node)
        return f"through alias {base.id}" if isinstance(base, ast.Name) else f"through {_short(node)}"


def _short(node: ast.expr, limit: int = 50) -> str:
    text = ast.unparse(node)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def scan_sources(sources: Iterable[tuple[int | None, str]]) -> list[Finding]:
    """Scan code cells in the order they run: ``(cell index, source)`` pairs; names carry from cell to cell."""
    scanner = _Scanner()
    for cell, source in sources:
        scanner.cell_code(cell, source if isinstance(source, str) else "".join(source))
    return scanner.finish()


def scan_notebook(nb) -> list[str]:
    """Every code cell of a notebook (cells numbered from 0, as in the grader's other flags), as flag texts."""
    return [str(f) for f in scan_sources((i, c.get("source", "")) for i, c in enumerate(nb.cells)
                                         if c.get("cell_type") == "code")]


def suspicious_code(source: str) -> list[str]:
    """One cell on its own (conventional names such as ``np``, ``F`` and ``checks`` as a release binds them)."""
    return [str(f) for f in scan_sources([(None, source)])]


