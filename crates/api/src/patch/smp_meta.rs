//! The type metadata strategic merge patch works from: for each field of an API type, its
//! patch strategy, its merge key and the type to descend into. The data for the served
//! Kubernetes types is the generated table in `merge_meta.rs`; tests bring their own tables.

/// How a field holds its type: directly, as list items, or as map values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// The field is an object of the type (or a scalar when the type is empty).
    Object,
    /// The field is a list whose items are of the type.
    List,
    /// The field is a map from arbitrary keys to values of the type (no 1.33 type needs it
    /// yet: no map value type carries a patch strategy).
    #[allow(dead_code)]
    MapOf,
}

/// A field's `x-kubernetes-patch-strategy` (`patchStrategy` struct tag upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Strategy {
    /// `merge`: lists merge (by merge key for lists of objects, as a set otherwise).
    pub merge: bool,
    /// `replace`: the patch value replaces the field wholesale, maps included.
    pub replace: bool,
    /// `retainKeys`: only informs clients that they may send `$retainKeys`; applying honours
    /// that directive wherever it appears.
    pub retain_keys: bool,
}

/// No patch strategy: maps merge, lists replace.
pub(crate) const NONE: Strategy = Strategy { merge: false, replace: false, retain_keys: false };
/// `patchStrategy:"merge"`.
pub(crate) const MERGE: Strategy = Strategy { merge: true, replace: false, retain_keys: false };
/// `patchStrategy:"replace"`.
pub(crate) const REPLACE: Strategy = Strategy { merge: false, replace: true, retain_keys: false };
/// `patchStrategy:"retainKeys"`.
pub(crate) const NONE_RETAIN: Strategy = Strategy { merge: false, replace: false, retain_keys: true };
/// `patchStrategy:"merge,retainKeys"`.
pub(crate) const MERGE_RETAIN: Strategy = Strategy { merge: true, replace: false, retain_keys: true };

/// One field of an API type; fields without strategy and without typed children are omitted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    /// The JSON name.
    pub name: &'static str,
    /// Whether `ty` is the field's own type, its items' or its values'.
    pub shape: Shape,
    /// The definition name (`io.k8s.api.core.v1.Container`), empty when untyped here.
    pub ty: &'static str,
    /// The patch strategy.
    pub strategy: Strategy,
    /// `x-kubernetes-patch-merge-key`, empty if none.
    pub merge_key: &'static str,
}

/// An API type: its definition name and its fields, sorted by name.
#[derive(Debug)]
pub(crate) struct TypeDef {
    /// The definition name, e.g. `io.k8s.api.apps.v1.Deployment`.
    pub name: &'static str,
    /// The fields that matter to SMP, sorted by JSON name.
    pub fields: &'static [Field],
}

/// A table of types sorted by name.
#[derive(Clone, Copy)]
pub(crate) struct Schema {
    types: &'static [TypeDef],
}

/// Where in the type graph a JSON value sits.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ctx {
    /// An object of a known type.
    Type(&'static TypeDef),
    /// A map whose values are of a known type.
    MapOf(&'static TypeDef),
    /// Anything else: plain JSON.
    Unknown,
}

/// What SMP needs to know about one key of an object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldMeta {
    /// The field's patch strategy.
    pub strategy: Strategy,
    /// The merge key of a list of objects, empty if none.
    pub merge_key: &'static str,
    /// The context of the field's value when it is an object.
    pub value: Ctx,
    /// The context of the field's items when it is a list.
    pub items: Ctx,
}

impl FieldMeta {
    const PLAIN: FieldMeta = FieldMeta { strategy: NONE, merge_key: "", value: Ctx::Unknown, items: Ctx::Unknown };
}

impl Schema {
    /// A schema over `types`, which must be sorted by name (fields too).
    pub(crate) const fn new(types: &'static [TypeDef]) -> Self {
        Schema { types }
    }

    /// The type called `name`, if the table has it.
    pub(crate) fn type_named(&self, name: &str) -> Option<&'static TypeDef> {
        if name.is_empty() {
            return None;
        }
        self.types.binary_search_by(|t| t.name.cmp(name)).ok().map(|i| &self.types[i])
    }

    /// The context of a value of type `name`.
    pub(crate) fn ctx(&self, name: &str) -> Ctx {
        self.type_named(name).map_or(Ctx::Unknown, Ctx::Type)
    }

    /// The metadata of `key` in an object sitting at `ctx`. Unknown keys are plain JSON
    /// (upstream errors out on unknown struct fields; see the module docs).
    pub(crate) fn field(&self, ctx: Ctx, key: &str) -> FieldMeta {
        match ctx {
            Ctx::Unknown => FieldMeta::PLAIN,
            Ctx::MapOf(t) => FieldMeta { value: Ctx::Type(t), ..FieldMeta::PLAIN },
            Ctx::Type(t) => {
                let Ok(i) = t.fields.binary_search_by(|f| f.name.cmp(key)) else {
                    return FieldMeta::PLAIN;
                };
                let f = &t.fields[i];
                let typed = self.type_named(f.ty);
                let (value, items) = match (f.shape, typed) {
                    (_, None) => (Ctx::Unknown, Ctx::Unknown),
                    (Shape::Object, Some(t)) => (Ctx::Type(t), Ctx::Unknown),
                    (Shape::List, Some(t)) => (Ctx::Unknown, Ctx::Type(t)),
                    (Shape::MapOf, Some(t)) => (Ctx::MapOf(t), Ctx::Unknown),
                };
                FieldMeta { strategy: f.strategy, merge_key: f.merge_key, value, items }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::merge_meta::{KINDS, TYPES};
    use super::*;

    #[test]
    fn generated_tables_are_sorted() {
        assert!(TYPES.windows(2).all(|w| w[0].name < w[1].name));
        for t in TYPES {
            assert!(t.fields.windows(2).all(|w| w[0].name < w[1].name), "{}", t.name);
        }
        assert!(KINDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn generated_table_knows_the_usual_fields() {
        let schema = Schema::new(TYPES);
        let at = |path: &[&str]| {
            let mut ctx = schema.ctx("io.k8s.api.apps.v1.Deployment");
            let mut meta = schema.field(ctx, path[0]);
            for key in &path[1..] {
                ctx = if matches!(meta.items, Ctx::Type(_)) { meta.items } else { meta.value };
                meta = schema.field(ctx, key);
            }
            meta
        };
        let containers = at(&["spec", "template", "spec", "containers"]);
        assert_eq!((containers.strategy, containers.merge_key), (MERGE, "name"));
        assert_eq!(at(&["spec", "template", "spec", "containers", "ports"]).merge_key, "containerPort");
        assert_eq!(at(&["spec", "template", "spec", "initContainers", "volumeMounts"]).merge_key, "mountPath");
        assert_eq!(at(&["spec", "template", "spec", "volumes"]).strategy, MERGE_RETAIN);
        assert_eq!(at(&["spec", "strategy"]).strategy, NONE_RETAIN);
        assert_eq!((at(&["metadata", "finalizers"]).strategy, at(&["metadata", "finalizers"]).merge_key), (MERGE, ""));
        assert_eq!(at(&["metadata", "ownerReferences"]).merge_key, "uid");
        assert_eq!(at(&["status", "conditions"]).merge_key, "type");
        assert_eq!(at(&["spec", "template", "spec", "tolerations"]).strategy, NONE);
        assert_eq!(at(&["spec", "unknownField", "deeper"]).strategy, NONE);
    }
}
