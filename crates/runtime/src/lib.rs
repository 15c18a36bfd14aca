//! The node runtime of Timonier: the image store (`images`: imports, pulls, layers unpacked
//! once as overlayfs lower directories), OCI bundles (`bundle`), and the per-pod shim
//! (`shim`): the single-threaded process that holds a pod's namespaces and creates, watches
//! and logs its containers with youki's libcontainer.


pub mod bundle;
pub mod images;
pub mod shim;
