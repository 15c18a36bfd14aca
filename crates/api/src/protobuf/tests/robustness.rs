//! Protobuf semantics, error messages, table sanity, and a fuzz that must never panic.

use serde_json::json;

use super::*;

// ---- protobuf semantics ----

#[test]
fn repeated_singular_messages_merge_and_scalars_last_wins() {
    let d = E::new()
        .m(1, E::new().s(1, "first").kv(11, "a", "1"))
        .m(2, E::new().i(1, 3))
        .m(1, E::new().s(1, "second").kv(11, "b", "2"))
        .m(2, E::new().i(1, 0));
    let v = decode(&body("apps/v1", "Deployment", d)).unwrap();
    assert_eq!(
        v["metadata"],
        json!({"name":"second","labels":{"a":"1","b":"2"}})
    );
    assert_eq!(v["spec"], json!({"replicas":0}));
    // A later zero of a non-pointer omitempty field removes the earlier value, as in Go.
    let v = decode(&body(
        "v1",
        "ConfigMap",
        E::new().m(1, E::new().s(1, "x").s(1, "")),
    ))
    .unwrap();
    assert_eq!(v["metadata"], json!({}));
}

#[test]
fn packed_and_unpacked_repeated_ints() {
    let mut packed = Vec::new();
    for g in [1000u64, 2000, 3000] {
        varint(&mut packed, g);
    }
    let psc = E::new().b(4, &packed).i(4, 4000).i(2, -1);
    let pod = E::new().m(1, meta("p")).m(2, E::new().m(14, psc));
    let v = decode(&body("v1", "Pod", pod)).unwrap();
    assert_eq!(
        v["spec"]["securityContext"],
        json!({"supplementalGroups":[1000,2000,3000,4000],"runAsUser":-1})
    );
}

#[test]
fn unknown_fields_are_skipped() {
    let mut raw = E::new()
        .m(1, meta("cm").s(99, "future").i(100, 5))
        .kv(2, "a", "b")
        .m(77, E::new().s(1, "x"))
        .key(78, 5)
        .0;
    raw.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // fixed32 payload of field 78
    let mut with_fixed64 = E(raw).key(79, 1).0;
    with_fixed64.extend_from_slice(&[0; 8]);
    let v = decode(&body("v1", "ConfigMap", E(with_fixed64))).unwrap();
    assert_eq!(
        v,
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","creationTimestamp":null},"data":{"a":"b"}})
    );
}

// ---- errors ----

#[test]
fn error_messages_say_what_is_wrong() {
    let msg = |b: &[u8]| decode(b).unwrap_err().to_string();
    assert!(msg(b"{\"kind\":\"Pod\"}").contains("magic"));
    assert!(msg(b"").contains("magic"));
    assert_eq!(
        msg(&body("x/v1", "Foo", E::new())),
        "unknown kind \"x/v1 Foo\""
    );
    assert!(msg(&[MAGIC.as_slice(), &[0x12, 0x00]].concat()).contains("no apiVersion/kind"));
    let gz = [
        MAGIC.as_slice(),
        &E::new()
            .m(1, E::new().s(1, "v1").s(2, "Pod"))
            .s(3, "gzip")
            .0,
    ]
    .concat();
    assert!(msg(&gz).contains("gzip"));

    let wrong = body(
        "apps/v1",
        "Deployment",
        E::new().m(2, E::new().s(1, "three")),
    );
    assert_eq!(
        msg(&wrong),
        "wrong wire type 2 at field 1 (replicas) of message k8s.io.api.apps.v1.DeploymentSpec: expected varint"
    );
    let wrong = body("v1", "Pod", E::new().i(1, 5));
    assert!(
        msg(&wrong).contains("field 1 (metadata) of message k8s.io.api.core.v1.Pod"),
        "{}",
        msg(&wrong)
    );

    let good = hex(SAMPLE_218);
    let e = msg(&good[..150]);
    assert!(e.starts_with("truncated protobuf data in message"), "{e}");
    let e = msg(&[MAGIC.as_slice(), &[0x0a, 0xff]].concat());
    assert!(e.contains("truncated"), "{e}");
    let e = msg(&[MAGIC.as_slice(), &[0x0a; 12], &[0x80; 11]].concat());
    assert!(e.contains("varint") || e.contains("truncated"), "{e}");
    let e = msg(&[MAGIC.as_slice(), &[0x0b]].concat()); // field 1, wire type 3 (group)
    assert!(e.contains("wire type 3"), "{e}");
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let mut schema = E::new().s(5, "string");
    for _ in 0..400 {
        schema = E::new().m(28, schema); // JSONSchemaProps.not
    }
    let version = E::new().s(1, "v1").m(4, E::new().m(1, schema));
    let crd = E::new().m(2, E::new().m(7, version));
    let err = decode(&body(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        crd,
    ))
    .unwrap_err();
    assert!(matches!(err, ProtobufError::TooDeep), "{err}");
    // Self-embedding RawExtensions hit the same limit.
    let mut b = body("v1", "ConfigMap", E::new());
    for _ in 0..300 {
        b = body(
            "apps/v1",
            "ControllerRevision",
            E::new().m(2, E::new().b(1, &b)),
        );
    }
    assert!(matches!(decode(&b), Err(ProtobufError::TooDeep)));
}

// ---- table ----

#[test]
fn supports_the_kinds_kubectl_sends() {
    for (av, kind) in [
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "Namespace"),
        ("v1", "Pod"),
        ("v1", "ResourceQuota"),
        ("v1", "ServiceAccount"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
        ("policy/v1", "PodDisruptionBudget"),
        ("policy/v1", "Eviction"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("networking.k8s.io/v1", "Ingress"),
        ("scheduling.k8s.io/v1", "PriorityClass"),
        ("authentication.k8s.io/v1", "TokenRequest"),
        ("authentication.k8s.io/v1", "SelfSubjectReview"),
        ("authentication.k8s.io/v1", "TokenReview"),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
        ("authorization.k8s.io/v1", "SubjectAccessReview"),
        ("autoscaling/v1", "HorizontalPodAutoscaler"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("autoscaling/v1", "Scale"),
        ("coordination.k8s.io/v1", "Lease"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
        ("events.k8s.io/v1", "Event"),
        ("storage.k8s.io/v1", "StorageClass"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ("certificates.k8s.io/v1", "CertificateSigningRequest"),
        ("apps/v1", "DeleteOptions"),
        ("v1", "DeleteOptions"),
        ("meta.k8s.io/v1", "DeleteOptions"),
    ] {
        assert!(supports(av, kind), "{av} {kind}");
    }
    assert!(!supports("apps/v1", "Pod"));
    assert!(!supports(
        "authentication.k8s.io/v1beta1",
        "SelfSubjectReview"
    ));
    assert!(!supports("x/v1", "DeleteOptions"));
    let del = body(
        "v1",
        "DeleteOptions",
        E::new()
            .i(1, 0)
            .s(4, "Background")
            .m(2, E::new().s(1, "uid-1")),
    );
    assert_eq!(
        decode(&del).unwrap(),
        json!({"apiVersion":"v1","kind":"DeleteOptions","gracePeriodSeconds":0,"propagationPolicy":"Background",
            "preconditions":{"uid":"uid-1"}})
    );
}

#[test]
fn table_is_consistent() {
    assert!(
        MESSAGES.windows(2).all(|w| w[0].name < w[1].name),
        "messages sorted by name"
    );
    assert!(
        KINDS
            .windows(2)
            .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)),
        "kinds sorted"
    );
    assert!(KINDS.iter().all(|k| usize::from(k.2) < MESSAGES.len()));
    for m in MESSAGES {
        assert!(
            m.fields.windows(2).all(|w| w[0].0 < w[1].0),
            "{}: fields sorted by number",
            m.name
        );
        let mut names = std::collections::BTreeSet::new();
        for f in m.fields {
            if let Kind::Msg(t) | Kind::MapMsg(t) = f.2 {
                assert!(usize::from(t) < MESSAGES.len(), "{}.{}", m.name, f.1);
            }
            if m.special != Special::None {
                continue;
            }
            if f.3 & I != 0 {
                let Kind::Msg(t) = f.2 else {
                    panic!("{}: inline field is not a message", m.name)
                };
                for g in message(t).fields {
                    assert!(
                        names.insert(g.1),
                        "{}: duplicate JSON name {} (inline)",
                        m.name,
                        g.1
                    );
                }
            } else {
                assert!(
                    !f.1.is_empty() && names.insert(f.1),
                    "{}: bad or duplicate JSON name {:?}",
                    m.name,
                    f.1
                );
            }
            if f.3 & Z != 0 {
                assert!(
                    !matches!(
                        f.2,
                        Kind::Msg(_) | Kind::MapStr | Kind::MapBytes | Kind::MapMsg(_)
                    ),
                    "{}.{}",
                    m.name,
                    f.1
                );
            }
        }
    }
    let inline: usize = MESSAGES
        .iter()
        .map(|m| m.fields.iter().filter(|f| f.3 & I != 0).count())
        .sum();
    assert_eq!(inline, 12, "inline embedded fields in the covered groups");
}

// ---- no panics ----

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn must_not_panic(b: &[u8]) {
    if let Err(e) = decode(b) {
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn fuzz_random_and_mutated_bodies_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seeds: Vec<Vec<u8>> = vectors().into_iter().map(|v| v.1).collect();
    seeds.push(hex(SAMPLE_218));
    let mut runs = 0;
    for _ in 0..3000 {
        let len = rng.below(300);
        let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if rng.below(2) == 0 {
            b.splice(0..0, MAGIC.iter().copied());
        }
        must_not_panic(&b);
        runs += 1;
    }
    for seed in &seeds {
        for cut in 0..seed.len() {
            must_not_panic(&seed[..cut]);
            runs += 1;
        }
        for _ in 0..300 {
            let mut b = seed.clone();
            for _ in 0..1 + rng.below(4) {
                let i = 4 + rng.below(b.len().saturating_sub(4));
                match rng.below(4) {
                    0 if i < b.len() => b[i] ^= 1 << rng.below(8),
                    1 if i < b.len() => b[i] = rng.next() as u8,
                    2 => b.insert(i.min(b.len()), rng.next() as u8),
                    _ if i < b.len() => {
                        b.remove(i);
                    }
                    _ => {}
                }
            }
            must_not_panic(&b);
            runs += 1;
        }
    }
    // Structurally valid random messages against every top-level kind.
    for _ in 0..2000 {
        let (av, kind, _) = KINDS[rng.below(KINDS.len())];
        let obj = random_message(&mut rng, 4);
        must_not_panic(&body(av, kind, obj));
        runs += 1;
    }
    assert!(runs > 10_000, "{runs}");
}

fn random_message(rng: &mut Rng, depth: usize) -> E {
    let mut e = E::new();
    for _ in 0..rng.below(8) {
        let tag = 1 + rng.below(45) as u32;
        e = match rng.below(if depth == 0 { 4 } else { 6 }) {
            0 => e.i(tag, rng.next() as i64 >> rng.below(64)),
            1 => e.s(tag, ["", "a", "0", "x/y", "{}", "1.5"][rng.below(6)]),
            2 => e.d(tag, f64::from_bits(rng.next())),
            3 => e.b(tag, &[MAGIC.as_slice(), &[rng.next() as u8]].concat()),
            _ => e.m(tag, random_message(rng, depth - 1)),
        };
    }
    e
}
