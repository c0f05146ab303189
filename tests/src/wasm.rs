//! Wasm byte patching for the tests and benchmarks.

/// The same component with a custom section appended: identical behaviour, another version id.
/// Used to exercise hot reload with many distinct versions.
pub fn tag_component(component: &[u8], tag: u32) -> Vec<u8> {
    const NAME: &[u8] = b"ackbar-version-tag";
    let payload = tag.to_le_bytes();
    let size = 1 + NAME.len() + payload.len();
    let mut bytes = component.to_vec();
    bytes.push(0); // custom section id
    bytes.push(size as u8); // LEB128 of a size < 128
    bytes.push(NAME.len() as u8);
    bytes.extend_from_slice(NAME);
    bytes.extend_from_slice(&payload);
    bytes
}
