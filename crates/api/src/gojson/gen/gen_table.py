#!/usr/bin/env python3
"""Generates ../table.rs: how Go's encoding/json writes each field of the built-in kinds.

Why: kube-apiserver decodes every write into Go structs and encodes them back, so what clients
read is what `encoding/json` makes of the struct: a non-pointer field without `omitempty` is
always there (its zero value when unset: `status: {replicas: 0}`), a non-pointer struct is always
there (at least `{}`; `omitempty` never omits a struct), `metav1.Time` zero is `null`, and a
non-pointer `omitempty` scalar, slice or map is dropped when zero or empty. Pointers keep what
they were given (`replicas: 0` on a pointer means something). Only the Go struct tags say which
field is which (OpenAPI's `required` misses `+optional` fields without `omitempty`, and cannot
tell a pointer from a non-pointer struct), so this script reads them from the upstream Go sources
of the release the server mimics.

Input: checkouts of k8s.io/api, k8s.io/apimachinery, k8s.io/apiextensions-apiserver and
k8s.io/kube-aggregator at TAG, in DIR/api, DIR/apimachinery, DIR/apiextensions-apiserver,
DIR/kube-aggregator (`--src DIR`); without `--src` the
script shallow-clones them from GitHub into a temporary directory (needs git and network).

Regenerate (python3 >= 3.8):
    python3 crates/api/src/gojson/gen/gen_table.py > crates/api/src/gojson/table.rs
Options: --src DIR, --verbose (lists every emitted field with its Go type).
"""
import argparse, os, re, subprocess, sys, tempfile

TAG = "v0.33.13"  # Kubernetes 1.33
REPOS = ["api", "apimachinery", "apiextensions-apiserver", "kube-aggregator"]
# Go packages whose kinds the server serves (Go import path -> directory in the checkouts).
KIND_PACKAGES = [
    "k8s.io/api/core/v1", "k8s.io/api/apps/v1", "k8s.io/api/batch/v1", "k8s.io/api/autoscaling/v1",
    "k8s.io/api/autoscaling/v2", "k8s.io/api/coordination/v1", "k8s.io/api/discovery/v1",
    "k8s.io/api/events/v1", "k8s.io/api/policy/v1", "k8s.io/api/rbac/v1", "k8s.io/api/storage/v1",
    "k8s.io/api/networking/v1", "k8s.io/api/authorization/v1", "k8s.io/api/authentication/v1",
    "k8s.io/api/admissionregistration/v1", "k8s.io/api/certificates/v1", "k8s.io/api/flowcontrol/v1",
    "k8s.io/api/node/v1", "k8s.io/api/scheduling/v1",
    "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1",
    "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1",
]
OTHER_PACKAGES = [
    "k8s.io/apimachinery/pkg/apis/meta/v1", "k8s.io/apimachinery/pkg/types",
    "k8s.io/apimachinery/pkg/api/resource", "k8s.io/apimachinery/pkg/util/intstr",
    "k8s.io/apimachinery/pkg/runtime",
]
# Types with their own MarshalJSON: the JSON of their zero value (None: leave them alone).
SPECIAL = {
    "k8s.io/apimachinery/pkg/apis/meta/v1.Time": "null",
    "k8s.io/apimachinery/pkg/apis/meta/v1.MicroTime": "null",
    "k8s.io/apimachinery/pkg/apis/meta/v1.Duration": '"0s"',
    "k8s.io/apimachinery/pkg/apis/meta/v1.FieldsV1": None,
    "k8s.io/apimachinery/pkg/util/intstr.IntOrString": "0",
    "k8s.io/apimachinery/pkg/api/resource.Quantity": '"0"',
    "k8s.io/apimachinery/pkg/runtime.RawExtension": "null",
    "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1.JSON": "null",
    "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1.JSONSchemaProps": None,
    "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1.JSONSchemaPropsOrArray": None,
    "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1.JSONSchemaPropsOrBool": None,
    "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1.JSONSchemaPropsOrStringArray": None,
}
SCALARS = {"string": "Str", "bool": "Bool", "float64": "Float", "float32": "Float"}
SCALARS.update({t: "Int" for t in ["int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64"]})


def warn(*a):
    print("gen_table:", *a, file=sys.stderr)


def pkg_dir(src, path):
    for repo in REPOS:
        prefix = "k8s.io/" + repo
        if path == prefix or path.startswith(prefix + "/"):
            return os.path.join(src, repo, path[len(prefix) + 1:])
    raise SystemExit(f"gen_table: no checkout holds {path}")


def definition_name(key):
    """`k8s.io/api/apps/v1.DaemonSet` -> `io.k8s.api.apps.v1.DaemonSet` (the OpenAPI name)"""
    path, name = key.rsplit(".", 1)
    return "io.k8s." + path[len("k8s.io/"):].replace("/", ".") + "." + name


class Package:
    def __init__(self, src, path):
        self.path, self.structs, self.named, self.group = path, {}, {}, None
        d = pkg_dir(src, path)
        for f in sorted(os.listdir(d)):
            if not f.endswith(".go") or f.endswith("_test.go") or f.startswith("zz_generated") or f.endswith(".pb.go"):
                continue
            text = open(os.path.join(d, f)).read()
            imports = self.imports(text)
            g = re.search(r'^const GroupName = "([^"]*)"', text, re.M)
            if g:
                self.group = g.group(1)
            code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
            # Line comments: whole lines, and what follows a field's closing tag.
            code = "\n".join("" if l.lstrip().startswith("//") else re.sub(r"(`)\s*//.*$", r"\1", l) for l in code.split("\n"))
            for m in re.finditer(r"^type (\w+) struct \{\n(.*?)^\}", code, re.S | re.M):
                self.structs[m.group(1)] = (self.fields(m.group(2)), imports)
            for m in re.finditer(r"^type (\w+) struct ?\{\}", code, re.M):
                self.structs[m.group(1)] = ([], imports)
            for m in re.finditer(r"^type (\w+) ([^\s{=][^\n{]*)$", code, re.M):
                if not m.group(2).startswith(("struct", "interface", "func")):
                    self.named[m.group(1)] = (m.group(2).strip(), imports)

    @staticmethod
    def imports(text):
        out = {}
        for block in re.findall(r"^import \((.*?)^\)", text, re.S | re.M) + re.findall(r"^import (.*)$", text, re.M):
            for m in re.finditer(r'^\s*(\w+)?\s*"([^"]+)"', block, re.M):
                out[m.group(1) or m.group(2).rsplit("/", 1)[-1]] = m.group(2)
        return out

    @staticmethod
    def fields(body):
        out = []
        for line in body.split("\n"):
            line = line.strip()
            if not line:
                continue
            m = re.match(r"^(?:(\w+)\s+)?(\S+)\s*`([^`]*)`$", line)
            if not m:
                if "json:" in line:
                    warn("field not understood:", line)
                continue
            name, typ, tags = m.groups()
            j = re.search(r'json:"([^"]*)"', tags)
            if j is None:
                continue
            parts = j.group(1).split(",")
            if parts[0] == "-":
                continue
            out.append({"go": name or typ, "type": typ, "json": parts[0], "omitempty": "omitempty" in parts[1:],
                        "inline": "inline" in parts[1:] or (name is None and parts[0] == "")})
        return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    if a.src:
        run(a.src, a.verbose)
    else:
        with tempfile.TemporaryDirectory() as d:
            for repo in REPOS:
                subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", TAG,
                                f"https://github.com/kubernetes/{repo}", os.path.join(d, repo)], check=True, stdout=sys.stderr)
            run(d, a.verbose)


def run(src, verbose):
    pkgs = {p: Package(src, p) for p in KIND_PACKAGES + OTHER_PACKAGES}

    def resolve(t, pkg, imports):
        """Go type expression -> ("ptr"|"slice"|"map", inner) / ("bytes",) / ("scalar", kind) /
        ("struct", key) / ("special", key)"""
        if t.startswith("*"):
            return ("ptr", resolve(t[1:], pkg, imports))
        if t == "[]byte":
            return ("bytes",)
        if t.startswith("[]"):
            return ("slice", resolve(t[2:], pkg, imports))
        if t.startswith("map["):
            depth, i = 0, 3
            while True:
                depth += {"[": 1, "]": -1}.get(t[i], 0)
                if depth == 0:
                    break
                i += 1
            return ("map", resolve(t[i + 1:], pkg, imports))
        if t in SCALARS:
            return ("scalar", SCALARS[t])
        if "." in t:
            alias, name = t.split(".", 1)
            path = imports.get(alias)
            if path is None:
                raise SystemExit(f"gen_table: unknown package {alias} in {pkg.path}")
        else:
            path, name = pkg.path, t
        key = path + "." + name
        if key in SPECIAL:
            return ("special", key)
        p = pkgs.get(path)
        if p is None:
            raise SystemExit(f"gen_table: type {key} from a package not read")
        if name in p.structs:
            return ("struct", key)
        if name in p.named:
            under, imps = p.named[name]
            return resolve(under, p, imps)
        raise SystemExit(f"gen_table: type {key} not found")

    def struct_fields(key, seen=()):
        """JSON fields of a struct, inline embedded structs flattened: [(json, omitempty, resolved, go)]"""
        path, name = key.rsplit(".", 1)
        p = pkgs[path]
        fields, imports = p.structs[name]
        out = []
        for f in fields:
            r = resolve(f["type"], p, imports)
            if f["inline"]:
                if r[0] != "struct":
                    raise SystemExit(f"gen_table: inline field {key}.{f['go']} is not a struct")
                out += struct_fields(r[1], seen + (key,))
            else:
                out.append((f["json"], f["omitempty"], r, f["type"]))
        return out

    # Kinds: structs embedding TypeMeta with an ObjectMeta `metadata`.
    kinds = []
    for path in KIND_PACKAGES:
        p = pkgs[path]
        for name, (fields, _) in sorted(p.structs.items()):
            if any(f["inline"] and f["type"].endswith("TypeMeta") for f in fields) and \
               any(f["json"] == "metadata" and f["type"].endswith("ObjectMeta") for f in fields):
                kinds.append((p.group, path.rsplit("/", 1)[1], name, path + "." + name))

    # Field rules, per struct reachable from a kind.
    rules, todo = {}, [k[3] for k in kinds]
    while todo:
        key = todo.pop()
        if key in rules:
            continue
        rules[key] = []
        for jname, omit, r, gotype in struct_fields(key):
            shape, child = "Leaf", None
            inner = r[1] if r[0] in ("ptr", "slice", "map") else r
            if r[0] in ("slice", "map") and inner[0] == "ptr":
                inner = inner[1]
            if inner[0] == "struct":
                child = inner[1]
                shape = {"slice": "List", "map": "Map"}.get(r[0], "Obj")
                todo.append(child)
            if r[0] == "ptr":
                presence = "Keep" if omit else "Null"
            elif r[0] in ("slice", "map", "bytes"):
                presence = "OmitEmpty" if omit else "Null"
            elif r[0] == "scalar":
                presence = "OmitEmpty" if omit else "Zero" + r[1]
            elif r[0] == "struct":
                presence = "ZeroObj"
            else:  # special: a struct, never omitted; its zero value is its own
                z = SPECIAL[r[1]]
                presence = {None: "Keep", "null": "ZeroNull", "0": "ZeroInt", '"0"': "ZeroQuantity", '"0s"': "ZeroDuration"}[z]
            rules[key].append((jname, presence, shape, child, gotype))

    # Keep only what changes something: a field with a rule, or one leading to such a field.
    relevant = set()
    changed = True
    while changed:
        changed = False
        for key, fs in rules.items():
            if key not in relevant and any(p != "Keep" or c in relevant for _, p, _, c, _ in fs):
                relevant.add(key)
                changed = True
    order = sorted(relevant, key=definition_name)
    index = {k: i for i, k in enumerate(order)}

    out = []
    w = out.append
    w(f"// @generated by gen/gen_table.py from the Go struct tags of k8s.io/api, apimachinery, apiextensions-apiserver and kube-aggregator {TAG}; do not edit by hand.")
    w("// Regenerate: python3 crates/api/src/gojson/gen/gen_table.py > crates/api/src/gojson/table.rs")
    nf = sum(1 for k in order for f in rules[k] if f[1] != "Keep" or f[3] in relevant)
    w(f"// {len(order)} types, {nf} fields, {len([k for k in kinds if k[3] in relevant])} kinds.")
    w("#![allow(clippy::all)]")
    w("use super::{Field as F, Presence::*, Shape::*, Type};")
    w("")
    w("/// Every type with a field that Go's encoding changes, sorted by definition name; `Obj(i)`,")
    w("/// `List(i)` and `Map(i)` index this slice. Fields are sorted by name.")
    w("#[rustfmt::skip]")
    w("pub(super) static TYPES: &[Type] = &[")
    for key in order:
        w(f'Type {{ name: "{definition_name(key)}", fields: &[ // {index[key]}')
        for jname, presence, shape, child, gotype in sorted(rules[key]):
            if presence == "Keep" and child not in relevant:
                continue
            sh = f"{shape}({index[child]})" if child in relevant else "Leaf"
            w(f'    F("{jname}", {presence}, {sh}), // {gotype}')
            if verbose:
                warn(definition_name(key), jname, presence, sh, gotype)
        w("]},")
    w("];")
    w("")
    w("/// (group, version, kind, type index) of every kind, sorted for binary search.")
    w("#[rustfmt::skip]")
    w("pub(super) static KINDS: &[(&str, &str, &str, u16)] = &[")
    for g, v, k, key in sorted(kinds):
        if key in relevant:
            w(f'    ("{g}", "{v}", "{k}", {index[key]}),')
    w("];")
    print("\n".join(out))
    warn(f"{len(order)} types, {nf} fields, {len(kinds)} kinds")


if __name__ == "__main__":
    main()
