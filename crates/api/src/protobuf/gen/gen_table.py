#!/usr/bin/env python3
"""Generates ../table.rs, the message table of the Kubernetes protobuf -> JSON transcoder.

Why: the project must not vendor upstream .proto files or descriptor sets, so the table is built
from two crates' generated Rust sources (downloaded by cargo into ~/.cargo/registry):

* k8s-pb 0.9.x: `#[prost(string, optional, tag = "1")] pub name: Option<String>` gives each
  message's field numbers, wire types, message types, repeated and map fields;
* k8s-openapi 0.29 (v1_33, then newer versions for fields 1.33 lacks): the serde field names
  (`"hostIPs" => Field::Key_host_ips`) give each field's JSON name, matched to the k8s-pb field by
  comparing alphanumerics case-insensitively (`host_ips` ~ `hostIPs`, `x_kubernetes_list_type` ~
  `x-kubernetes-list-type`); `impl crate::Resource` gives apiVersion/kind of each top-level kind.
  A message field with no JSON counterpart whose own fields are all JSON fields of the parent is an
  inline embedded struct (`Volume.volumeSource`, `Probe.handler`, ...): flattened in JSON.

`nonptr_omitempty.txt` (beside this script; one message per line, then its JSON field names) lists
the non-pointer `omitempty` fields whose zero values Go's protobuf encoder writes but JSON omits; it
was derived from the upstream Go struct tags (k8s.io/api, apimachinery, apiextensions-apiserver).

Regenerate (python3 >= 3.8; when the two crates are not in ~/.cargo/registry yet, the script runs
`cargo fetch` for them in a temporary crate, so crates.io must be reachable then):
    python3 crates/api/src/protobuf/gen/gen_table.py > crates/api/src/protobuf/table.rs
Options: --registry DIR (a ~/.cargo/registry/src/<index> folder), --omitempty FILE, --verbose.
"""
import argparse, glob, os, re, subprocess, sys, tempfile

K8S_PB, K8S_OPENAPI = "0.9.0", "0.29.0"  # the exact crate versions read

# Proto packages covered (with every message they reference).
PACKAGES = [
    "k8s.io.api.core.v1", "k8s.io.api.apps.v1", "k8s.io.api.batch.v1", "k8s.io.api.autoscaling.v1",
    "k8s.io.api.autoscaling.v2", "k8s.io.api.policy.v1", "k8s.io.api.rbac.v1",
    "k8s.io.api.networking.v1", "k8s.io.api.coordination.v1", "k8s.io.api.discovery.v1",
    "k8s.io.api.events.v1", "k8s.io.api.storage.v1", "k8s.io.api.scheduling.v1",
    "k8s.io.api.authorization.v1", "k8s.io.api.authentication.v1", "k8s.io.api.certificates.v1",
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1", "k8s.io.apimachinery.pkg.apis.meta.v1",
]
# Messages whose JSON is not an object; the decoder handles each by hand (Special enum in mod.rs).
SPECIAL = {
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time": "Time",
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Duration": "Duration",
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1": "RawJson",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Verbs": "StringList",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "RawJson",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSON": "RawJson",
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray": "SchemaOrArray",
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool": "SchemaOrBool",
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray": "SchemaOrStringArray",
}
SPECIAL_SUFFIX = {".ExtraValue": "StringList"}  # authentication/authorization/certificates
OPENAPI_VERSIONS = ["v1_33", "v1_34", "v1_35", "v1_36", "v1_37"]
SCALARS = {"string": "Str", "int32": "I32", "int64": "I64", "bool": "Bool", "bytes": "Bytes", "double": "F64"}


def norm(s):
    return re.sub(r"[^a-z0-9]", "", s.lower())


def warn(*a):
    print("gen_table:", *a, file=sys.stderr)


def split_top(s):
    """splits a generic argument list at top-level commas"""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip()); cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def resolve(modpath, rust_type):
    """`super::super::x::Name` seen from module path [a, b, c] -> (package, Name)"""
    t = rust_type.strip()
    for wrap in ("::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"):
        while t.startswith(wrap):
            t = t[len(wrap):-1].strip()
    parts = t.split("::")
    if parts[0] == "crate":
        base, parts = [], parts[1:]
    else:
        base = list(modpath)
        while parts and parts[0] == "super":
            base.pop(); parts = parts[1:]
    return "k8s.io." + ".".join(base + parts[:-1]), parts[-1]


def parse_k8s_pb(root):
    """-> {(package, RustName): [field dict]}"""
    msgs = {}
    for f in sorted(glob.glob(os.path.join(root, "src", "**", "mod.rs"), recursive=True)):
        modpath = os.path.relpath(os.path.dirname(f), os.path.join(root, "src")).split(os.sep)
        src = open(f).read()
        pkg = "k8s.io." + ".".join(modpath)
        for m in re.finditer(r"^pub struct (\w+) \{(?:\}|\n(.*?)^\})", src, re.S | re.M):
            name, body = m.group(1), m.group(2) or ""
            fields, docs, attr, pending = [], [], None, None
            for line in body.split("\n"):
                t = line.strip()
                if pending is not None:
                    pending += t
                elif t.startswith("///"):
                    docs.append(t[3:].strip())
                    continue
                elif t.startswith("#[prost("):
                    attr = t[len("#[prost("):-2]
                    continue
                elif t.startswith("pub "):
                    pending = t
                else:
                    continue
                if pending.count("<") != pending.count(">") or not pending.endswith(","):
                    continue
                fm = re.match(r"pub (?:r#)?(\w+):(.*),$", pending)
                pending, doc_word, docs = None, (docs[0].split() or [""])[0] if docs else "", []
                fname, ftype = fm.groups()
                ftype = re.sub(r"\s+", "", ftype).replace(",>", ">")
                tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
                kind = attr.split(",")[0].split("=")[0].strip()
                fd = {"tag": tag, "rust": fname, "repeated": "repeated" in attr, "doc": doc_word}
                if kind == "btree_map":
                    kt, vt = [x.strip() for x in re.search(r'btree_map = "([^"]*)"', attr).group(1).split(",")]
                    assert kt == "string", (name, fname, attr)
                    inner = ftype[ftype.index("<") + 1:-1]
                    fd["map"] = vt
                    if vt == "message":
                        fd["msg"] = resolve(modpath, split_top(inner)[1])
                elif kind == "message":
                    fd["msg"] = resolve(modpath, ftype)
                else:
                    assert kind in SCALARS, (name, fname, attr)
                    fd["scalar"] = kind
                fields.append(fd)
            msgs[(pkg, name)] = fields
    return msgs


def parse_openapi(root):
    """-> {normalized definition name: {"name": proto-style full name, "json": {norm: json}, "opt": {json: bool}}}
    and [(apiVersion, kind, normalized definition name)]"""
    defs, kinds = {}, []
    for ver in OPENAPI_VERSIONS:
        for f in sorted(glob.glob(os.path.join(root, "src", ver, "**", "*.rs"), recursive=True)):
            src = open(f).read()
            m = re.match(r"// Generated from definition (\S+)", src)
            if not m:
                continue
            full = "k8s.io." + m.group(1)[len("io.k8s."):].replace("apiextensions-apiserver", "apiextensions_apiserver")
            key = norm(full)
            d = defs.setdefault(key, {"name": full, "json": {}, "opt": {}})
            types = dict(re.findall(r"^    pub (\w+): (.*),$", src, re.M))
            for j, rust in re.findall(r'^\s*"([^"]+)" => Field::Key_(\w+),$', src, re.M):
                if norm(j) in d["json"] and d["json"][norm(j)] != j:
                    warn(f"{full}: JSON names {j} and {d['json'][norm(j)]} compare equal")
                elif norm(j) not in d["json"]:
                    d["json"][norm(j)] = j
                    d["opt"][j] = types.get(rust, "Option").startswith("Option")
            av = re.search(r'const API_VERSION: &\'static str = "([^"]*)";', src)
            kd = re.search(r'const KIND: &\'static str = "([^"]*)";', src)
            if av and kd and ver == OPENAPI_VERSIONS[0]:
                kinds.append((av.group(1), kd.group(1), key))
    return defs, kinds


def find_sources(registry):
    """-> (k8s-pb dir, k8s-openapi dir) in the cargo registry, fetching them once if missing"""
    def look():
        regs = [registry] if registry else glob.glob(os.path.expanduser("~/.cargo/registry/src/*"))
        pb = [p for r in regs for p in glob.glob(os.path.join(r, "k8s-pb-" + K8S_PB))]
        oa = [p for r in regs for p in glob.glob(os.path.join(r, "k8s-openapi-" + K8S_OPENAPI))]
        return (pb[0], oa[0]) if pb and oa else None
    found = look()
    if not found and not registry:
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "src"))
            open(os.path.join(d, "src", "lib.rs"), "w").close()
            open(os.path.join(d, "Cargo.toml"), "w").write(
                '[package]\nname = "gen-table-fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n'
                f'k8s-pb = "={K8S_PB}"\nk8s-openapi = {{ version = "={K8S_OPENAPI}", features = ["v1_33"] }}\n')
            subprocess.run(["cargo", "fetch", "--manifest-path", os.path.join(d, "Cargo.toml")], check=True, stdout=sys.stderr)
        found = look()
    if not found:
        sys.exit(f"gen_table: k8s-pb {K8S_PB} / k8s-openapi {K8S_OPENAPI} sources not found")
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--registry", default=None)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--omitempty", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "nonptr_omitempty.txt"))
    a = ap.parse_args()
    pb_root, oa_root = find_sources(a.registry)
    msgs = parse_k8s_pb(pb_root)
    defs, kinds = parse_openapi(oa_root)
    omit = {}
    for line in open(a.omitempty):
        parts = line.split()
        if parts and not parts[0].startswith("#"):
            omit[norm(parts[0])] = set(parts[1:])

    # Proto-style full names (k8s-pb renames JSON -> Json: take the spelling from k8s-openapi).
    by_norm = {norm(p + "." + n): (p, n) for (p, n) in msgs}
    def full(key):
        p, n = key
        d = defs.get(norm(p + "." + n))
        return d["name"] if d else p + "." + n

    # Closure over references from the covered packages.
    todo = [k for k in msgs if k[0] in PACKAGES]
    seen = set()
    while todo:
        k = todo.pop()
        if k in seen:
            continue
        seen.add(k)
        for fd in msgs[k]:
            if "msg" in fd:
                if fd["msg"] not in msgs:
                    sys.exit(f"gen_table: unresolved type {fd['msg']} in {k}")
                todo.append(fd["msg"])

    def special(k):
        n = full(k)
        return SPECIAL.get(n) or next((v for s, v in SPECIAL_SUFFIX.items() if n.endswith(s)), None)

    # JSON names: own definition first; inline detection; inline messages inherit parents' names.
    json_of = {}   # (msgkey, rust field) -> json name
    inline = set()  # (msgkey, rust field)
    inherited = {}  # inline message key -> {norm: json} from its parents
    for k in sorted(seen):
        d = defs.get(norm(full(k)))
        if not d or special(k):
            continue
        for fd in msgs[k]:
            if norm(fd["rust"]) in d["json"]:
                json_of[(k, fd["rust"])] = d["json"][norm(fd["rust"])]
            elif "msg" in fd and not fd["repeated"] and "map" not in fd:
                inner = msgs[fd["msg"]]
                if inner and all(norm(x["rust"]) in d["json"] for x in inner):
                    inline.add((k, fd["rust"]))
                    inherited.setdefault(fd["msg"], {}).update({norm(x["rust"]): d["json"][norm(x["rust"])] for x in inner})
    fallbacks = []
    for k in sorted(seen):
        if special(k):
            continue
        d = defs.get(norm(full(k)))
        for fd in msgs[k]:
            if (k, fd["rust"]) in json_of or (k, fd["rust"]) in inline:
                continue
            if k in inherited and norm(fd["rust"]) in inherited[k]:
                json_of[(k, fd["rust"])] = inherited[k][norm(fd["rust"])]
                continue
            parts = fd["rust"].split("_")
            guess = parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])
            word = re.sub(r"[^\w$-]", "", fd["doc"])  # upstream comments start with the JSON name
            listed = [n for n in omit.get(norm(full(k)), ()) if norm(n) == norm(fd["rust"])]
            json_of[(k, fd["rust"])] = word if norm(word) == norm(fd["rust"]) and word[:1].islower() else (listed or [guess])[0]
            fallbacks.append(f"{full(k)}.{fd['rust']} -> {json_of[(k, fd['rust'])]}" + ("" if d else " (no definition)"))

    order = sorted(seen, key=full)
    index = {k: i for i, k in enumerate(order)}
    kinds_out = sorted({(av, kind, index[by_norm[key]]) for av, kind, key in kinds
                        if key in by_norm and by_norm[key] in index})
    used_omit = set()
    out = []
    w = out.append
    w("// @generated by gen/gen_table.py from %s and %s; do not edit by hand." % (os.path.basename(pb_root), os.path.basename(oa_root)))
    w("// Regenerate: python3 crates/api/src/protobuf/gen/gen_table.py > crates/api/src/protobuf/table.rs")
    w(f"// {len(order)} messages, {sum(len(msgs[k]) for k in order)} fields, {len(kinds_out)} kinds.")
    w("// Field flags: R repeated, Z drop zero value (non-pointer omitempty), I inline (flattened).")
    w("#![allow(clippy::all)]")
    w("use super::{Field as F, Kind::*, Message, Special as S, I, R, Z};")
    w("")
    w("/// Every covered message, sorted by full proto name; `Kind::Msg(i)` indexes this slice.")
    w("#[rustfmt::skip]")
    w("pub(super) static MESSAGES: &[Message] = &[")
    for k in order:
        i = index[k]
        sp = special(k) or "None"
        w(f'Message {{ name: "{full(k)}", special: S::{sp}, fields: &[ // {i}')
        om = omit.get(norm(full(k)), set())
        for fd in sorted(msgs[k], key=lambda x: x["tag"]):
            flags = []
            if "map" in fd:
                kind = {"string": "MapStr", "bytes": "MapBytes"}.get(fd["map"]) or f"MapMsg({index[fd['msg']]})"
            elif "msg" in fd:
                kind = f"Msg({index[fd['msg']]})"
            else:
                kind = SCALARS[fd["scalar"]]
            if fd["repeated"]:
                flags.append("R")
            if (k, fd["rust"]) in inline:
                flags.append("I")
                jn = ""
            else:
                jn = "" if special(k) else json_of[(k, fd["rust"])]
            if norm(jn) in {norm(n) for n in om}:  # the list spells a few names as proto does (uID)
                used_omit.add((norm(full(k)), norm(jn)))
                if "scalar" in fd and not fd["repeated"]:
                    flags.append("Z")
            elif fd.get("scalar") == "bytes" and not fd["repeated"] and not special(k):
                dd = defs.get(norm(full(k)))
                if dd and dd["opt"].get(jn, True):
                    flags.append("Z")
            comment = f" // {full(fd['msg']).rsplit('.', 1)[1]}" if "msg" in fd else ""
            w(f'    F({fd["tag"]}, "{jn}", {kind}, {"|".join(flags) or 0}),{comment}')
        w("]},")
    w("];")
    w("")
    w("/// (apiVersion, kind, message index) of every top-level kind, sorted for binary search.")
    w("#[rustfmt::skip]")
    w("pub(super) static KINDS: &[(&str, &str, u16)] = &[")
    for av, kind, i in kinds_out:
        w(f'    ("{av}", "{kind}", {i}),')
    w("];")
    print("\n".join(out))

    covered = {norm(full(k)) for k in seen}
    for mk, names in sorted(omit.items()):
        if mk in covered:
            for n in sorted(names):
                if (mk, norm(n)) not in used_omit:
                    warn(f"omitempty entry not matched: {mk} {n}")
    for f in fallbacks:
        if a.verbose:
            warn("no k8s-openapi field, name from the k8s-pb doc comment or camelCase:", f)
    warn(f"{len(order)} messages, {sum(len(msgs[k]) for k in order)} fields, {len(inline)} inline fields, "
         f"{len(kinds_out)} kinds, {len(fallbacks)} fields named without k8s-openapi (--verbose lists them)")
    for k, f in sorted(inline):
        warn("inline:", full(k), f)


if __name__ == "__main__":
    main()
