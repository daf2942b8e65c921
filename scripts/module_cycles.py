#!/usr/bin/env python3
"""Report import cycles between the crate's modules (one module per file).

An edge A -> B means a file of module A names `crate::B...` (or `super::...` resolving to B)
outside `#[cfg(test)]` blocks. A module's path is resolved to the longest prefix that is a
module file. Edges from a module to its own ancestors (child using items declared in mod.rs)
and from a parent to its children are kept: both directions make a cycle.
Exit status 1 when any strongly connected component has more than one module.
Usage: scripts/module_cycles.py [src_dir]
"""
import os
import re
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "src"
modules = {}  # module path tuple -> file
for root, _, files in os.walk(src):
    for f in files:
        if not f.endswith(".rs"):
            continue
        p = os.path.relpath(os.path.join(root, f), src)
        parts = p[:-3].split(os.sep)
        if parts[-1] in ("mod", "lib", "main"):
            parts = parts[:-1]
        if p == "main.rs":
            parts = ["<bin>"]
        modules[tuple(parts)] = os.path.join(src, p)


def strip_tests(text):
    # drop `#[cfg(test)] mod x { ... }` blocks by brace matching
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    text = "".join(out)
    text = re.sub(r"//[^\n]*", "", text)
    return text


def resolve(path):
    for n in range(len(path), 0, -1):
        if tuple(path[:n]) in modules:
            return tuple(path[:n])
    return ()


def expand_use(body):
    """Expand a `use` tree (without the leading `use`) into flat paths."""
    body = body.strip()
    m = re.match(r"^([\w:]*?)(::)?\{(.*)\}$", body, re.S)
    if not m:
        return [body.split(" as ")[0].strip()]
    prefix, inner = m.group(1), m.group(3)
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    items.append(cur)
    res = []
    for it in items:
        if it.strip():
            for sub in expand_use(it):
                res.append(prefix + "::" + sub if prefix else sub)
    return res


edges = {}
top = {}
for mod, f in modules.items():
    text = strip_tests(open(f, encoding="utf-8").read())
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        paths += expand_use(m.group(1))
    paths += re.findall(r"\b(?:crate|super)(?:::\w+)+", text)
    if mod == ("<bin>",):
        paths += ["crate::" + p[len("cocreate::"):] for p in re.findall(r"\bcocreate(?:::\w+)+", text)]
    for p in paths:
        parts = [x for x in p.split("::") if x]
        if not parts:
            continue
        if parts[0] == "crate":
            target = resolve(parts[1:])
        elif parts[0] == "super":
            base = list(mod)
            # a mod.rs file's `super` is its parent; a plain file's `super` is its parent too
            while parts and parts[0] == "super":
                base = base[:-1]
                parts = parts[1:]
            target = resolve(base + parts)
        elif parts[0] == "self":
            target = resolve(list(mod) + parts[1:])
        elif tuple(list(mod) + parts[:1]) in modules:
            target = resolve(list(mod) + parts)
        else:
            continue
        if not target or target == mod or target not in modules:
            continue
        # a module and its own submodules are one unit (mod.rs re-exports, children using the
        # parent's items); those edges are not cycles. Everything else is checked twice: between
        # files, and between the crate's top-level modules (decide, gitlab, queue, ...).
        if target[: len(mod)] == mod or mod[: len(target)] == target:
            continue
        edges.setdefault(mod, set()).add(target)
        if mod[0] != target[0]:
            top.setdefault((mod[0],), set()).add((target[0],))

# Tarjan's SCC
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in graph.get(v, ()):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(comp)


for graph in (edges, top):
    nodes = set(graph) | {w for ws in graph.values() for w in ws}
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    index.clear()
    low.clear()

name = lambda m: "::".join(m) or "crate"
for comp in sccs:
    names = sorted(name(m) for m in comp)
    print("cycle:", ", ".join(names))
    for a in comp:
        g = top if len(comp[0]) == 1 and a in top else edges
        for b in sorted(g.get(a, ())):
            if b in comp:
                print(f"  {name(a)} -> {name(b)}")
print(f"{len(modules)} modules, {sum(len(e) for e in edges.values())} edges between files,"
      f" {sum(len(e) for e in top.values())} between top-level modules, {len(sccs)} cycles")
sys.exit(1 if sccs else 0)
