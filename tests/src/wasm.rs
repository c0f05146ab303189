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

/// The fixture component with its variant byte set to `variant` (an ASCII digit): it traps on
/// `trap-in-variant:<variant>` where the unpatched build (`0`) does not.
pub fn variant_component(component: &[u8], variant: u8) -> Vec<u8> {
    const MARKER: &[u8] = b"ackbar-fixture-variant:";
    let at = component
        .windows(MARKER.len() + 1)
        .position(|w| w.starts_with(MARKER))
        .expect("the fixture carries its variant marker");
    let mut bytes = component.to_vec();
    bytes[at + MARKER.len()] = variant;
    bytes
}

/// The same component grown to at least `size` bytes by a custom section of filler: identical
/// behaviour, another version id, the size of a larger component.
pub fn pad_component(component: &[u8], size: usize) -> Vec<u8> {
    const NAME: &[u8] = b"ackbar-padding";
    let filler = size.saturating_sub(component.len());
    let mut section = Vec::with_capacity(filler + NAME.len() + 8);
    leb128(&mut section, NAME.len());
    section.extend_from_slice(NAME);
    // Not all zeros, so compression cannot shrink the chunks.
    let mut x: u32 = 0x9e37_79b9;
    section.extend((0..filler).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    let mut bytes = component.to_vec();
    bytes.push(0); // custom section id
    leb128(&mut bytes, section.len());
    bytes.extend_from_slice(&section);
    bytes
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
