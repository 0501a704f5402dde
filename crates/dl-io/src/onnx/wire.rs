//! The protobuf wire format, as much of it as ONNX needs: varints, fixed 32/64-bit values and
//! length-delimited fields (strings, bytes, nested messages, packed repeated scalars).
//!
//! The encoder appends to a `Vec<u8>`. The decoder borrows the input and never allocates from
//! a length it read: every length is checked against the bytes that remain before it is used,
//! and a varint longer than ten bytes is an error, so a hostile file cannot make it allocate
//! or loop beyond the file's own size.

/// Wire type of varint fields (`int32`, `int64`, `uint64`, `bool`, enums).
pub(crate) const VARINT: u8 = 0;
/// Wire type of 8-byte fields (`double`, `fixed64`).
pub(crate) const FIXED64: u8 = 1;
/// Wire type of length-delimited fields (strings, bytes, messages, packed scalars).
pub(crate) const LEN: u8 = 2;
/// Wire type of 4-byte fields (`float`, `fixed32`).
pub(crate) const FIXED32: u8 = 5;

/// Appends protobuf fields to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire_type));
    }

    /// An `int64`/`int32`/enum field; negative values take ten bytes (two's complement), as
    /// protobuf encodes them.
    pub(crate) fn int(&mut self, field: u32, value: i64) {
        self.key(field, VARINT);
        self.varint(value as u64);
    }

    /// A `float` field.
    pub(crate) fn float(&mut self, field: u32, value: f32) {
        self.key(field, FIXED32);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// A `bytes` field.
    pub(crate) fn bytes(&mut self, field: u32, value: &[u8]) {
        self.key(field, LEN);
        self.varint(value.len() as u64);
        self.buf.extend_from_slice(value);
    }

    /// A `string` field.
    pub(crate) fn string(&mut self, field: u32, value: &str) {
        self.bytes(field, value.as_bytes());
    }

    /// A `string` field, left out when empty (proto3's default).
    pub(crate) fn string_opt(&mut self, field: u32, value: &str) {
        if !value.is_empty() {
            self.string(field, value);
        }
    }

    /// A nested message written by `body`.
    pub(crate) fn message(&mut self, field: u32, body: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        body(&mut inner);
        self.bytes(field, &inner.buf);
    }

    /// A packed repeated `int64` field (left out when empty).
    pub(crate) fn packed_ints(&mut self, field: u32, values: &[i64]) {
        if values.is_empty() {
            return;
        }
        let mut inner = Writer::default();
        values.iter().for_each(|&v| inner.varint(v as u64));
        self.bytes(field, &inner.buf);
    }

    /// A packed repeated `float` field (left out when empty).
    pub(crate) fn packed_floats(&mut self, field: u32, values: &[f32]) {
        if values.is_empty() {
            return;
        }
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.bytes(field, &bytes);
    }

    /// A packed repeated `double` field (left out when empty).
    pub(crate) fn packed_doubles(&mut self, field: u32, values: &[f64]) {
        if values.is_empty() {
            return;
        }
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.bytes(field, &bytes);
    }
}

/// One decoded field value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Value<'a> {
    fn kind(&self) -> &'static str {
        match self {
            Value::Varint(_) => "a varint",
            Value::Fixed64(_) => "a 64-bit value",
            Value::Len(_) => "a length-delimited value",
            Value::Fixed32(_) => "a 32-bit value",
        }
    }

    /// The value of an integer field (two's complement for negative `int64`).
    pub(crate) fn int(self, what: &str) -> Result<i64, String> {
        match self {
            Value::Varint(v) => Ok(v as i64),
            other => Err(format!("{what}: expected a varint, found {}", other.kind())),
        }
    }

    /// The value of a `float` field.
    pub(crate) fn float(self, what: &str) -> Result<f32, String> {
        match self {
            Value::Fixed32(v) => Ok(f32::from_bits(v)),
            other => Err(format!(
                "{what}: expected a 32-bit float, found {}",
                other.kind()
            )),
        }
    }

    /// The bytes of a `bytes` field or nested message.
    pub(crate) fn bytes(self, what: &str) -> Result<&'a [u8], String> {
        match self {
            Value::Len(bytes) => Ok(bytes),
            other => Err(format!(
                "{what}: expected a length-delimited value, found {}",
                other.kind()
            )),
        }
    }

    /// The text of a `string` field.
    pub(crate) fn string(self, what: &str) -> Result<String, String> {
        let bytes = self.bytes(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what}: not valid UTF-8"))
    }

    /// Append the elements of a repeated integer field, packed or not.
    pub(crate) fn ints_into(self, what: &str, out: &mut Vec<i64>) -> Result<(), String> {
        match self {
            Value::Varint(v) => out.push(v as i64),
            Value::Len(bytes) => {
                let mut reader = Reader::new(bytes);
                while !reader.at_end() {
                    out.push(reader.varint().map_err(|e| format!("{what}: {e}"))? as i64);
                }
            }
            other => {
                return Err(format!("{what}: expected varints, found {}", other.kind()));
            }
        }
        Ok(())
    }

    /// Append the elements of a repeated `float` field, packed or not.
    pub(crate) fn floats_into(self, what: &str, out: &mut Vec<f32>) -> Result<(), String> {
        match self {
            Value::Fixed32(v) => out.push(f32::from_bits(v)),
            Value::Len(bytes) => {
                if bytes.len() % 4 != 0 {
                    return Err(format!(
                        "{what}: {} bytes of packed floats is not a multiple of 4",
                        bytes.len()
                    ));
                }
                out.extend(
                    bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
            }
            other => {
                return Err(format!(
                    "{what}: expected 32-bit floats, found {}",
                    other.kind()
                ));
            }
        }
        Ok(())
    }

    /// Append the elements of a repeated `double` field, packed or not.
    pub(crate) fn doubles_into(self, what: &str, out: &mut Vec<f64>) -> Result<(), String> {
        match self {
            Value::Fixed64(v) => out.push(f64::from_bits(v)),
            Value::Len(bytes) => {
                if bytes.len() % 8 != 0 {
                    return Err(format!(
                        "{what}: {} bytes of packed doubles is not a multiple of 8",
                        bytes.len()
                    ));
                }
                out.extend(bytes.chunks_exact(8).map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    f64::from_le_bytes(b)
                }));
            }
            other => {
                return Err(format!(
                    "{what}: expected 64-bit floats, found {}",
                    other.kind()
                ));
            }
        }
        Ok(())
    }
}

/// Reads protobuf fields from a borrowed buffer.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(format!("truncated varint at byte {}", self.pos));
            };
            self.pos += 1;
            // The tenth byte may only carry the top bit of a 64-bit value.
            if i == 9 && byte > 1 {
                return Err(format!(
                    "varint longer than 64 bits at byte {}",
                    self.pos - 1
                ));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {}", self.pos))
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], String> {
        if len > self.remaining() {
            return Err(format!(
                "{what} of {len} bytes at byte {} runs past the end ({} bytes left)",
                self.pos,
                self.remaining()
            ));
        }
        let slice = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(slice)
    }

    /// The next field number and value, or `None` at the end of the buffer.
    pub(crate) fn field(&mut self) -> Result<Option<(u32, Value<'a>)>, String> {
        if self.at_end() {
            return Ok(None);
        }
        let at = self.pos;
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(format!("invalid field number {field} at byte {at}"));
        }
        let value = match (key & 7) as u8 {
            VARINT => Value::Varint(self.varint()?),
            FIXED64 => {
                let b = self.take(8, "a 64-bit value")?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Value::Fixed64(u64::from_le_bytes(a))
            }
            LEN => {
                let len = self.varint()?;
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                Value::Len(self.take(len, "a length-delimited field")?)
            }
            FIXED32 => {
                let b = self.take(4, "a 32-bit value")?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            other => {
                return Err(format!(
                    "unsupported wire type {other} (field {field}) at byte {at}"
                ));
            }
        };
        Ok(Some((field as u32, value)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn varints_follow_the_protobuf_examples() {
        // From the protobuf encoding guide: 1 -> 01, 150 -> 96 01; -1 as int64 takes 10 bytes.
        for (value, bytes) in [
            (1u64, vec![0x01]),
            (150, vec![0x96, 0x01]),
            (
                u64::MAX,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut w = Writer::default();
            w.varint(value);
            assert_eq!(w.buf, bytes);
            assert_eq!(Reader::new(&bytes).varint().unwrap(), value);
        }
    }

    #[test]
    fn fields_round_trip() {
        let mut w = Writer::default();
        w.int(1, -3);
        w.float(2, 1.5);
        w.string(3, "héllo");
        w.packed_ints(4, &[1, 300, -2]);
        w.packed_floats(5, &[0.25, -4.0]);
        w.message(6, |m| m.int(1, 7));
        let mut r = Reader::new(&w.buf);
        let mut next = || r.field().unwrap().unwrap();
        assert_eq!(next().1.int("a").unwrap(), -3);
        assert_eq!(next().1.float("b").unwrap(), 1.5);
        assert_eq!(next().1.string("c").unwrap(), "héllo");
        let mut ints = Vec::new();
        next().1.ints_into("d", &mut ints).unwrap();
        assert_eq!(ints, [1, 300, -2]);
        let mut floats = Vec::new();
        next().1.floats_into("e", &mut floats).unwrap();
        assert_eq!(floats, [0.25, -4.0]);
        let (field, inner) = next();
        assert_eq!(field, 6);
        let mut inner = Reader::new(inner.bytes("f").unwrap());
        assert_eq!(inner.field().unwrap(), Some((1, Value::Varint(7))));
        assert!(r.field().unwrap().is_none());
    }

    #[test]
    fn lengths_past_the_end_are_refused() {
        // Field 1, length-delimited, claiming 2^62 bytes with 1 byte present.
        let mut w = Writer::default();
        w.varint((1 << 3) | 2);
        w.varint(1 << 62);
        w.buf.push(0);
        let err = Reader::new(&w.buf).field().unwrap_err();
        assert!(err.contains("runs past the end"), "{err}");
        // A varint that never ends, and one with too many bytes.
        assert!(Reader::new(&[0x80, 0x80]).varint().is_err());
        assert!(Reader::new(&[0xff; 11]).varint().is_err());
        // Field number 0 and the deprecated group wire types.
        assert!(Reader::new(&[0x00, 0x00]).field().is_err());
        assert!(Reader::new(&[0x0b]).field().is_err());
        // Packed floats must be whole.
        assert!(
            Value::Len(&[0, 0, 0])
                .floats_into("x", &mut Vec::new())
                .is_err()
        );
    }
}
