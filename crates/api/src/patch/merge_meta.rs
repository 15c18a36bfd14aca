//! GENERATED strategic-merge-patch metadata for the served Kubernetes 1.33 API types; do not edit.
//!
//! How it was made (the throwaway tools are not committed):
//! 1. a scratch binary depending on k8s-openapi 0.29 (features `v1_33`, `schemars`) called
//!    `SchemaGenerator::subschema_for::<T>()` for every served kind `T` and dumped
//!    `generator.definitions()` as JSON: the field -> type graph (`$ref`, array `items`,
//!    map `additionalProperties`);
//! 2. a Python script joined each definition's properties with the per-field
//!    `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key` of the 1.33 OpenAPI
//!    (shared/notes/data/merge-metadata.json) and printed this file.
//!
//! Only types that carry a patch strategy, or lead to one, are listed; fields and types absent
//! here behave as plain JSON (maps merge, lists replace). `KINDS` maps (group, version, kind)
//! to the root type (core group "").
//!
//! The admissionregistration, certificates, flowcontrol, node and scheduling kinds were added
//! by hand from the same merge-metadata.json when those kinds came to be served; APIService
//! (not in that file) from kube-aggregator's types.go: status.conditions merge on `type`.

#![allow(unused_imports)]
use super::meta::{Field, Shape, Shape::*, Strategy, TypeDef, MERGE, MERGE_RETAIN, NONE, NONE_RETAIN, REPLACE};

/// Constructor shorthand keeping the table compact.
const fn f(name: &'static str, shape: Shape, ty: &'static str, strategy: Strategy, merge_key: &'static str) -> Field {
    Field { name, shape, ty, strategy, merge_key }
}

/// Every relevant API type with its relevant fields, both sorted by name (binary-searched).
pub(crate) static TYPES: &[TypeDef] = &[
    TypeDef { name: "io.k8s.api.admissionregistration.v1.MutatingWebhook", fields: &[
        f("matchConditions", List, "", MERGE, "name"),
    ] },
    TypeDef { name: "io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("webhooks", List, "io.k8s.api.admissionregistration.v1.MutatingWebhook", MERGE, "name"),
    ] },
    TypeDef { name: "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicy", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("spec", Object, "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyBinding", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", fields: &[
        f("matchConditions", List, "", MERGE, "name"),
        f("variables", List, "", MERGE, "name"),
    ] },
    TypeDef { name: "io.k8s.api.admissionregistration.v1.ValidatingWebhook", fields: &[
        f("matchConditions", List, "", MERGE, "name"),
    ] },
    TypeDef { name: "io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("webhooks", List, "io.k8s.api.admissionregistration.v1.ValidatingWebhook", MERGE, "name"),
    ] },
    TypeDef { name: "io.k8s.api.apps.v1.ControllerRevision", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.apps.v1.DaemonSet", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("spec", Object, "io.k8s.api.apps.v1.DaemonSetSpec", NONE, ""),
        f("status", Object, "io.k8s.api.apps.v1.DaemonSetStatus", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.apps.v1.DaemonSetSpec", fields: &[
        f("template", Object, "io.k8s.api.core.v1.PodTemplateSpec", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.apps.v1.DaemonSetStatus", fields: &[
        f("conditions", List, "", MERGE, "type"),
    ] },
    TypeDef { name: "io.k8s.api.apps.v1.Deployment", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("spec", Object, "io.k8s.api.apps.v1.DeploymentSpec", NONE, ""),
        f("status", Object, "io.k8s.api.apps.v1.DeploymentStatus", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.apps.v1.DeploymentSpec", fields: &[
        f("strategy", Object, "", NONE_RETAIN, ""),
        f("template", Object, "io.k8s.api.core.v1.PodTemplateSpec", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.apps.v1.DeploymentStatus", fields: &[
        f("conditions", List, "", MERGE, "type"),
    ] },
    TypeDef { name: "io.k8s.api.apps.v1.ReplicaSet", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("spec", Object, "io.k8s.api.apps.v1.ReplicaSetSpec", NONE, ""),
        f("status", Object, "io.k8s.api.apps.v1.ReplicaSetStatus", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.apps.v1.ReplicaSetSpec", fields: &[
        f("template", Object, "io.k8s.api.core.v1.PodTemplateSpec", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.apps.v1.ReplicaSetStatus", fields: &[
        f("conditions", List, "", MERGE, "type"),
    ] },
    TypeDef { name: "io.k8s.api.apps.v1.StatefulSet", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("spec", Object, "io.k8s.api.apps.v1.StatefulSetSpec", NONE, ""),
        f("status", Object, "io.k8s.api.apps.v1.StatefulSetStatus", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.apps.v1.StatefulSetSpec", fields: &[
        f("template", Object, "io.k8s.api.core.v1.PodTemplateSpec", NONE, ""),
        f("volumeClaimTemplates", List, "io.k8s.api.core.v1.PersistentVolumeClaim", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.apps.v1.StatefulSetStatus", fields: &[
        f("conditions", List, "", MERGE, "type"),
    ] },
    TypeDef { name: "io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.autoscaling.v1.Scale", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("status", Object, "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", fields: &[
        f("conditions", List, "", MERGE, "type"),
    ] },
    TypeDef { name: "io.k8s.api.batch.v1.CronJob", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("spec", Object, "io.k8s.api.batch.v1.CronJobSpec", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.batch.v1.CronJobSpec", fields: &[
        f("jobTemplate", Object, "io.k8s.api.batch.v1.JobTemplateSpec", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.batch.v1.Job", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("spec", Object, "io.k8s.api.batch.v1.JobSpec", NONE, ""),
        f("status", Object, "io.k8s.api.batch.v1.JobStatus", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.batch.v1.JobSpec", fields: &[
        f("template", Object, "io.k8s.api.core.v1.PodTemplateSpec", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.batch.v1.JobStatus", fields: &[
        f("conditions", List, "", MERGE, "type"),
    ] },
    TypeDef { name: "io.k8s.api.batch.v1.JobTemplateSpec", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("spec", Object, "io.k8s.api.batch.v1.JobSpec", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.certificates.v1.CertificateSigningRequest", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.coordination.v1.Lease", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.Binding", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.ComponentStatus", fields: &[
        f("conditions", List, "", MERGE, "type"),
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.ConfigMap", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.Container", fields: &[
        f("env", List, "", MERGE, "name"),
        f("ports", List, "", MERGE, "containerPort"),
        f("volumeDevices", List, "", MERGE, "devicePath"),
        f("volumeMounts", List, "", MERGE, "mountPath"),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.ContainerStatus", fields: &[
        f("allocatedResourcesStatus", List, "", MERGE, "name"),
        f("volumeMounts", List, "", MERGE, "mountPath"),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.Endpoints", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.EphemeralVolumeSource", fields: &[
        f("volumeClaimTemplate", Object, "io.k8s.api.core.v1.PersistentVolumeClaimTemplate", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.Event", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.LimitRange", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.Namespace", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("status", Object, "io.k8s.api.core.v1.NamespaceStatus", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.NamespaceStatus", fields: &[
        f("conditions", List, "", MERGE, "type"),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.Node", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("spec", Object, "io.k8s.api.core.v1.NodeSpec", NONE, ""),
        f("status", Object, "io.k8s.api.core.v1.NodeStatus", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.NodeSpec", fields: &[
        f("podCIDRs", List, "", MERGE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.NodeStatus", fields: &[
        f("addresses", List, "", MERGE, "type"),
        f("conditions", List, "", MERGE, "type"),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.PersistentVolume", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.PersistentVolumeClaim", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("status", Object, "io.k8s.api.core.v1.PersistentVolumeClaimStatus", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.PersistentVolumeClaimStatus", fields: &[
        f("conditions", List, "", MERGE, "type"),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.PersistentVolumeClaimTemplate", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.Pod", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("spec", Object, "io.k8s.api.core.v1.PodSpec", NONE, ""),
        f("status", Object, "io.k8s.api.core.v1.PodStatus", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.PodSpec", fields: &[
        f("containers", List, "io.k8s.api.core.v1.Container", MERGE, "name"),
        f("ephemeralContainers", List, "", MERGE, "name"),
        f("hostAliases", List, "", MERGE, "ip"),
        f("imagePullSecrets", List, "", MERGE, "name"),
        f("initContainers", List, "io.k8s.api.core.v1.Container", MERGE, "name"),
        f("resourceClaims", List, "", MERGE_RETAIN, "name"),
        f("schedulingGates", List, "", MERGE, "name"),
        f("topologySpreadConstraints", List, "", MERGE, "topologyKey"),
        f("volumes", List, "io.k8s.api.core.v1.Volume", MERGE_RETAIN, "name"),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.PodStatus", fields: &[
        f("conditions", List, "", MERGE, "type"),
        f("containerStatuses", List, "io.k8s.api.core.v1.ContainerStatus", NONE, ""),
        f("ephemeralContainerStatuses", List, "io.k8s.api.core.v1.ContainerStatus", NONE, ""),
        f("hostIPs", List, "", MERGE, "ip"),
        f("initContainerStatuses", List, "io.k8s.api.core.v1.ContainerStatus", NONE, ""),
        f("podIPs", List, "", MERGE, "ip"),
        f("resourceClaimStatuses", List, "", MERGE_RETAIN, "name"),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.PodTemplate", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("template", Object, "io.k8s.api.core.v1.PodTemplateSpec", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.PodTemplateSpec", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("spec", Object, "io.k8s.api.core.v1.PodSpec", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.ReplicationController", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("spec", Object, "io.k8s.api.core.v1.ReplicationControllerSpec", NONE, ""),
        f("status", Object, "io.k8s.api.core.v1.ReplicationControllerStatus", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.ReplicationControllerSpec", fields: &[
        f("template", Object, "io.k8s.api.core.v1.PodTemplateSpec", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.ReplicationControllerStatus", fields: &[
        f("conditions", List, "", MERGE, "type"),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.ResourceQuota", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.Secret", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.Service", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("spec", Object, "io.k8s.api.core.v1.ServiceSpec", NONE, ""),
        f("status", Object, "io.k8s.api.core.v1.ServiceStatus", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.ServiceAccount", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("secrets", List, "", MERGE, "name"),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.ServiceSpec", fields: &[
        f("ports", List, "", MERGE, "port"),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.ServiceStatus", fields: &[
        f("conditions", List, "", MERGE, "type"),
    ] },
    TypeDef { name: "io.k8s.api.core.v1.Volume", fields: &[
        f("ephemeral", Object, "io.k8s.api.core.v1.EphemeralVolumeSource", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.discovery.v1.EndpointSlice", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.events.v1.Event", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.flowcontrol.v1.FlowSchema", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("status", Object, "io.k8s.api.flowcontrol.v1.FlowSchemaStatus", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.flowcontrol.v1.FlowSchemaStatus", fields: &[
        f("conditions", List, "", MERGE, "type"),
    ] },
    TypeDef { name: "io.k8s.api.flowcontrol.v1.PriorityLevelConfiguration", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("status", Object, "io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationStatus", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationStatus", fields: &[
        f("conditions", List, "", MERGE, "type"),
    ] },
    TypeDef { name: "io.k8s.api.networking.v1.IPAddress", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.networking.v1.Ingress", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.networking.v1.IngressClass", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.networking.v1.NetworkPolicy", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.networking.v1.ServiceCIDR", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("status", Object, "io.k8s.api.networking.v1.ServiceCIDRStatus", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.networking.v1.ServiceCIDRStatus", fields: &[
        f("conditions", List, "", MERGE, "type"),
    ] },
    TypeDef { name: "io.k8s.api.node.v1.RuntimeClass", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.policy.v1.Eviction", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.policy.v1.PodDisruptionBudget", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("spec", Object, "io.k8s.api.policy.v1.PodDisruptionBudgetSpec", NONE, ""),
        f("status", Object, "io.k8s.api.policy.v1.PodDisruptionBudgetStatus", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.policy.v1.PodDisruptionBudgetSpec", fields: &[
        f("selector", Object, "", REPLACE, ""),
    ] },
    TypeDef { name: "io.k8s.api.policy.v1.PodDisruptionBudgetStatus", fields: &[
        f("conditions", List, "", MERGE, "type"),
    ] },
    TypeDef { name: "io.k8s.api.rbac.v1.ClusterRole", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.rbac.v1.ClusterRoleBinding", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.rbac.v1.Role", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.rbac.v1.RoleBinding", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.scheduling.v1.PriorityClass", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.storage.v1.CSIDriver", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.storage.v1.CSINode", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("spec", Object, "io.k8s.api.storage.v1.CSINodeSpec", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.storage.v1.CSINodeSpec", fields: &[
        f("drivers", List, "", MERGE, "name"),
    ] },
    TypeDef { name: "io.k8s.api.storage.v1.CSIStorageCapacity", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.storage.v1.StorageClass", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.api.storage.v1.VolumeAttachment", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", fields: &[
        f("finalizers", List, "", MERGE, ""),
        f("ownerReferences", List, "", MERGE, "uid"),
    ] },
    TypeDef { name: "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIService", fields: &[
        f("metadata", Object, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", NONE, ""),
        f("status", Object, "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceStatus", NONE, ""),
    ] },
    TypeDef { name: "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceStatus", fields: &[
        f("conditions", List, "", MERGE, "type"),
    ] },
];

/// Served kinds (group, version, kind) and their root type; sorted for binary search.
pub(crate) static KINDS: &[(&str, &str, &str, &str)] = &[
    ("", "v1", "Binding", "io.k8s.api.core.v1.Binding"),
    ("", "v1", "ComponentStatus", "io.k8s.api.core.v1.ComponentStatus"),
    ("", "v1", "ConfigMap", "io.k8s.api.core.v1.ConfigMap"),
    ("", "v1", "Endpoints", "io.k8s.api.core.v1.Endpoints"),
    ("", "v1", "Event", "io.k8s.api.core.v1.Event"),
    ("", "v1", "LimitRange", "io.k8s.api.core.v1.LimitRange"),
    ("", "v1", "Namespace", "io.k8s.api.core.v1.Namespace"),
    ("", "v1", "Node", "io.k8s.api.core.v1.Node"),
    ("", "v1", "PersistentVolume", "io.k8s.api.core.v1.PersistentVolume"),
    ("", "v1", "PersistentVolumeClaim", "io.k8s.api.core.v1.PersistentVolumeClaim"),
    ("", "v1", "Pod", "io.k8s.api.core.v1.Pod"),
    ("", "v1", "PodTemplate", "io.k8s.api.core.v1.PodTemplate"),
    ("", "v1", "ReplicationController", "io.k8s.api.core.v1.ReplicationController"),
    ("", "v1", "ResourceQuota", "io.k8s.api.core.v1.ResourceQuota"),
    ("", "v1", "Secret", "io.k8s.api.core.v1.Secret"),
    ("", "v1", "Service", "io.k8s.api.core.v1.Service"),
    ("", "v1", "ServiceAccount", "io.k8s.api.core.v1.ServiceAccount"),
    ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy", "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding", "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyBinding"),
    ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration"),
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"),
    ("apiregistration.k8s.io", "v1", "APIService", "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIService"),
    ("apps", "v1", "ControllerRevision", "io.k8s.api.apps.v1.ControllerRevision"),
    ("apps", "v1", "DaemonSet", "io.k8s.api.apps.v1.DaemonSet"),
    ("apps", "v1", "Deployment", "io.k8s.api.apps.v1.Deployment"),
    ("apps", "v1", "ReplicaSet", "io.k8s.api.apps.v1.ReplicaSet"),
    ("apps", "v1", "StatefulSet", "io.k8s.api.apps.v1.StatefulSet"),
    ("autoscaling", "v1", "HorizontalPodAutoscaler", "io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler"),
    ("autoscaling", "v1", "Scale", "io.k8s.api.autoscaling.v1.Scale"),
    ("autoscaling", "v2", "HorizontalPodAutoscaler", "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler"),
    ("batch", "v1", "CronJob", "io.k8s.api.batch.v1.CronJob"),
    ("batch", "v1", "Job", "io.k8s.api.batch.v1.Job"),
    ("certificates.k8s.io", "v1", "CertificateSigningRequest", "io.k8s.api.certificates.v1.CertificateSigningRequest"),
    ("coordination.k8s.io", "v1", "Lease", "io.k8s.api.coordination.v1.Lease"),
    ("discovery.k8s.io", "v1", "EndpointSlice", "io.k8s.api.discovery.v1.EndpointSlice"),
    ("events.k8s.io", "v1", "Event", "io.k8s.api.events.v1.Event"),
    ("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema", "io.k8s.api.flowcontrol.v1.FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "v1", "PriorityLevelConfiguration", "io.k8s.api.flowcontrol.v1.PriorityLevelConfiguration"),
    ("networking.k8s.io", "v1", "IPAddress", "io.k8s.api.networking.v1.IPAddress"),
    ("networking.k8s.io", "v1", "Ingress", "io.k8s.api.networking.v1.Ingress"),
    ("networking.k8s.io", "v1", "IngressClass", "io.k8s.api.networking.v1.IngressClass"),
    ("networking.k8s.io", "v1", "NetworkPolicy", "io.k8s.api.networking.v1.NetworkPolicy"),
    ("networking.k8s.io", "v1", "ServiceCIDR", "io.k8s.api.networking.v1.ServiceCIDR"),
    ("node.k8s.io", "v1", "RuntimeClass", "io.k8s.api.node.v1.RuntimeClass"),
    ("policy", "v1", "Eviction", "io.k8s.api.policy.v1.Eviction"),
    ("policy", "v1", "PodDisruptionBudget", "io.k8s.api.policy.v1.PodDisruptionBudget"),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole", "io.k8s.api.rbac.v1.ClusterRole"),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "io.k8s.api.rbac.v1.ClusterRoleBinding"),
    ("rbac.authorization.k8s.io", "v1", "Role", "io.k8s.api.rbac.v1.Role"),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", "io.k8s.api.rbac.v1.RoleBinding"),
    ("scheduling.k8s.io", "v1", "PriorityClass", "io.k8s.api.scheduling.v1.PriorityClass"),
    ("storage.k8s.io", "v1", "CSIDriver", "io.k8s.api.storage.v1.CSIDriver"),
    ("storage.k8s.io", "v1", "CSINode", "io.k8s.api.storage.v1.CSINode"),
    ("storage.k8s.io", "v1", "CSIStorageCapacity", "io.k8s.api.storage.v1.CSIStorageCapacity"),
    ("storage.k8s.io", "v1", "StorageClass", "io.k8s.api.storage.v1.StorageClass"),
    ("storage.k8s.io", "v1", "VolumeAttachment", "io.k8s.api.storage.v1.VolumeAttachment"),
];
