//! The ONNX messages dl-io writes and reads (`onnx.proto`, IR version 8), with their field
//! numbers, encoded and decoded by hand over [`super::wire`].
//!
//! Only the fields dl-io uses are kept; unknown fields are skipped when decoding, as protobuf
//! requires. Graph-valued attributes (the bodies of `If`/`Loop`/`Scan`) are skipped too, so
//! decoding never recurses deeper than the fixed message nesting below.

use super::wire::{Reader, Value, Writer};

/// `TensorProto.DataType` values.
pub(crate) mod data_type {
    pub(crate) const FLOAT: i32 = 1;
    pub(crate) const INT64: i32 = 7;
    pub(crate) const FLOAT16: i32 = 10;
    pub(crate) const DOUBLE: i32 = 11;
    pub(crate) const BFLOAT16: i32 = 16;

    /// The data type's name in `onnx.proto`, for messages.
    pub(crate) fn name(value: i32) -> String {
        let name = match value {
            0 => "UNDEFINED",
            1 => "FLOAT",
            2 => "UINT8",
            3 => "INT8",
            4 => "UINT16",
            5 => "INT16",
            6 => "INT32",
            7 => "INT64",
            8 => "STRING",
            9 => "BOOL",
            10 => "FLOAT16",
            11 => "DOUBLE",
            12 => "UINT32",
            13 => "UINT64",
            14 => "COMPLEX64",
            15 => "COMPLEX128",
            16 => "BFLOAT16",
            other => return format!("data type {other}"),
        };
        name.to_string()
    }
}

/// `AttributeProto.AttributeType` values.
pub(crate) mod attribute_type {
    pub(crate) const FLOAT: i32 = 1;
    pub(crate) const INT: i32 = 2;
    pub(crate) const STRING: i32 = 3;
    pub(crate) const TENSOR: i32 = 4;
    pub(crate) const INTS: i32 = 7;
}

/// `ModelProto`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Model {
    pub(crate) ir_version: i64,
    pub(crate) opset_import: Vec<OpsetId>,
    pub(crate) producer_name: String,
    pub(crate) producer_version: String,
    pub(crate) doc_string: String,
    pub(crate) graph: Option<Graph>,
}

/// `OperatorSetIdProto`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OpsetId {
    pub(crate) domain: String,
    pub(crate) version: i64,
}

/// `GraphProto`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Graph {
    pub(crate) node: Vec<Node>,
    pub(crate) name: String,
    pub(crate) initializer: Vec<Tensor>,
    pub(crate) doc_string: String,
    pub(crate) input: Vec<ValueInfo>,
    pub(crate) output: Vec<ValueInfo>,
}

/// `NodeProto`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Node {
    pub(crate) input: Vec<String>,
    pub(crate) output: Vec<String>,
    pub(crate) name: String,
    pub(crate) op_type: String,
    pub(crate) domain: String,
    pub(crate) attribute: Vec<Attribute>,
}

/// `AttributeProto` (scalar, string, tensor and list-of-int values).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Attribute {
    pub(crate) name: String,
    pub(crate) r#type: i32,
    pub(crate) f: f32,
    pub(crate) i: i64,
    pub(crate) s: Vec<u8>,
    pub(crate) t: Option<Tensor>,
    pub(crate) ints: Vec<i64>,
}

/// `TensorProto`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Tensor {
    pub(crate) dims: Vec<i64>,
    pub(crate) data_type: i32,
    pub(crate) name: String,
    pub(crate) raw_data: Vec<u8>,
    pub(crate) float_data: Vec<f32>,
    pub(crate) int32_data: Vec<i64>,
    pub(crate) int64_data: Vec<i64>,
    pub(crate) double_data: Vec<f64>,
    /// `DataLocation`: 0 = in this message, 1 = in an external file.
    pub(crate) data_location: i64,
    /// Whether `external_data` entries were present.
    pub(crate) has_external_data: bool,
}

/// `ValueInfoProto` of a tensor: name, element type and shape.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ValueInfo {
    pub(crate) name: String,
    pub(crate) elem_type: i32,
    /// `None` when the type has no shape (any rank).
    pub(crate) shape: Option<Vec<Dim>>,
}

/// `TensorShapeProto.Dimension`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dim {
    /// A fixed size.
    Value(i64),
    /// A named size that varies (`"batch"`).
    Param(String),
    /// Neither set.
    Unknown,
}

// ---- encoding ------------------------------------------------------------------------------

impl Model {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.int(1, self.ir_version);
        w.string_opt(2, &self.producer_name);
        w.string_opt(3, &self.producer_version);
        w.string_opt(6, &self.doc_string);
        if let Some(graph) = &self.graph {
            w.message(7, |m| graph.encode(m));
        }
        for opset in &self.opset_import {
            w.message(8, |m| {
                m.string_opt(1, &opset.domain);
                m.int(2, opset.version);
            });
        }
        w.buf
    }
}

impl Graph {
    fn encode(&self, w: &mut Writer) {
        for node in &self.node {
            w.message(1, |m| node.encode(m));
        }
        w.string_opt(2, &self.name);
        for tensor in &self.initializer {
            w.message(5, |m| tensor.encode(m));
        }
        w.string_opt(10, &self.doc_string);
        for input in &self.input {
            w.message(11, |m| input.encode(m));
        }
        for output in &self.output {
            w.message(12, |m| output.encode(m));
        }
    }
}

impl Node {
    fn encode(&self, w: &mut Writer) {
        for input in &self.input {
            w.string(1, input);
        }
        for output in &self.output {
            w.string(2, output);
        }
        w.string_opt(3, &self.name);
        w.string(4, &self.op_type);
        for attribute in &self.attribute {
            w.message(5, |m| attribute.encode(m));
        }
        w.string_opt(7, &self.domain);
    }
}

impl Attribute {
    fn encode(&self, w: &mut Writer) {
        w.string(1, &self.name);
        match self.r#type {
            attribute_type::FLOAT => w.float(2, self.f),
            attribute_type::INT => w.int(3, self.i),
            attribute_type::STRING => w.bytes(4, &self.s),
            attribute_type::TENSOR => {
                if let Some(t) = &self.t {
                    w.message(5, |m| t.encode(m));
                }
            }
            attribute_type::INTS => w.packed_ints(8, &self.ints),
            _ => {}
        }
        w.int(20, i64::from(self.r#type));
    }
}

impl Tensor {
    fn encode(&self, w: &mut Writer) {
        w.packed_ints(1, &self.dims);
        w.int(2, i64::from(self.data_type));
        w.packed_floats(4, &self.float_data);
        w.packed_ints(5, &self.int32_data);
        w.packed_ints(7, &self.int64_data);
        w.string_opt(8, &self.name);
        if !self.raw_data.is_empty() {
            w.bytes(9, &self.raw_data);
        }
        w.packed_doubles(10, &self.double_data);
        if self.data_location != 0 {
            w.int(14, self.data_location);
        }
    }
}

impl ValueInfo {
    fn encode(&self, w: &mut Writer) {
        w.string(1, &self.name);
        w.message(2, |type_proto| {
            type_proto.message(1, |tensor_type| {
                tensor_type.int(1, i64::from(self.elem_type));
                if let Some(shape) = &self.shape {
                    tensor_type.message(2, |shape_proto| {
                        for dim in shape {
                            shape_proto.message(1, |d| match dim {
                                Dim::Value(v) => d.int(1, *v),
                                Dim::Param(p) => d.string(2, p),
                                Dim::Unknown => {}
                            });
                        }
                    });
                }
            });
        });
    }
}

// ---- decoding ------------------------------------------------------------------------------

/// Call `each` for every field of the message in `bytes`.
fn fields<'a>(
    bytes: &'a [u8],
    what: &str,
    mut each: impl FnMut(u32, Value<'a>) -> Result<(), String>,
) -> Result<(), String> {
    let mut reader = Reader::new(bytes);
    while let Some((field, value)) = reader.field().map_err(|e| format!("{what}: {e}"))? {
        each(field, value)?;
    }
    Ok(())
}

/// An `int32` field value: protobuf writes negative `int32` values sign-extended to 64 bits.
fn int32(value: Value<'_>, what: &str) -> Result<i32, String> {
    let v = value.int(what)?;
    i32::try_from(v).map_err(|_| format!("{what}: {v} does not fit an int32"))
}

impl Model {
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut model = Model::default();
        fields(bytes, "model", |field, value| {
            match field {
                1 => model.ir_version = value.int("model.ir_version")?,
                2 => model.producer_name = value.string("model.producer_name")?,
                3 => model.producer_version = value.string("model.producer_version")?,
                6 => model.doc_string = value.string("model.doc_string")?,
                7 => model.graph = Some(Graph::decode(value.bytes("model.graph")?)?),
                8 => {
                    let mut opset = OpsetId::default();
                    fields(
                        value.bytes("model.opset_import")?,
                        "opset_import",
                        |f, v| {
                            match f {
                                1 => opset.domain = v.string("opset_import.domain")?,
                                2 => opset.version = v.int("opset_import.version")?,
                                _ => {}
                            }
                            Ok(())
                        },
                    )?;
                    model.opset_import.push(opset);
                }
                _ => {}
            }
            Ok(())
        })?;
        Ok(model)
    }
}

impl Graph {
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut graph = Graph::default();
        fields(bytes, "graph", |field, value| {
            match field {
                1 => {
                    let what = format!("graph.node[{}]", graph.node.len());
                    graph.node.push(Node::decode(value.bytes(&what)?, &what)?);
                }
                2 => graph.name = value.string("graph.name")?,
                5 => {
                    let what = format!("graph.initializer[{}]", graph.initializer.len());
                    graph
                        .initializer
                        .push(Tensor::decode(value.bytes(&what)?, &what)?);
                }
                10 => graph.doc_string = value.string("graph.doc_string")?,
                11 | 12 => {
                    let list = if field == 11 {
                        &mut graph.input
                    } else {
                        &mut graph.output
                    };
                    let what = format!(
                        "graph.{}[{}]",
                        if field == 11 { "input" } else { "output" },
                        list.len()
                    );
                    list.push(ValueInfo::decode(value.bytes(&what)?, &what)?);
                }
                _ => {}
            }
            Ok(())
        })?;
        Ok(graph)
    }
}

impl Node {
    fn decode(bytes: &[u8], what: &str) -> Result<Self, String> {
        let mut node = Node::default();
        fields(bytes, what, |field, value| {
            match field {
                1 => node.input.push(value.string(&format!("{what}.input"))?),
                2 => node.output.push(value.string(&format!("{what}.output"))?),
                3 => node.name = value.string(&format!("{what}.name"))?,
                4 => node.op_type = value.string(&format!("{what}.op_type"))?,
                5 => {
                    let what = format!("{what}.attribute[{}]", node.attribute.len());
                    node.attribute
                        .push(Attribute::decode(value.bytes(&what)?, &what)?);
                }
                7 => node.domain = value.string(&format!("{what}.domain"))?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(node)
    }
}

impl Attribute {
    fn decode(bytes: &[u8], what: &str) -> Result<Self, String> {
        let mut attribute = Attribute::default();
        fields(bytes, what, |field, value| {
            match field {
                1 => attribute.name = value.string(&format!("{what}.name"))?,
                2 => attribute.f = value.float(&format!("{what}.f"))?,
                3 => attribute.i = value.int(&format!("{what}.i"))?,
                4 => attribute.s = value.bytes(&format!("{what}.s"))?.to_vec(),
                5 => {
                    let what = format!("{what}.t");
                    attribute.t = Some(Tensor::decode(value.bytes(&what)?, &what)?);
                }
                8 => value.ints_into(&format!("{what}.ints"), &mut attribute.ints)?,
                20 => attribute.r#type = int32(value, &format!("{what}.type"))?,
                // Graphs (6, 11) and the rest are not needed and are skipped.
                _ => {}
            }
            Ok(())
        })?;
        Ok(attribute)
    }
}

impl Tensor {
    fn decode(bytes: &[u8], what: &str) -> Result<Self, String> {
        let mut tensor = Tensor::default();
        fields(bytes, what, |field, value| {
            match field {
                1 => value.ints_into(&format!("{what}.dims"), &mut tensor.dims)?,
                2 => tensor.data_type = int32(value, &format!("{what}.data_type"))?,
                4 => value.floats_into(&format!("{what}.float_data"), &mut tensor.float_data)?,
                5 => value.ints_into(&format!("{what}.int32_data"), &mut tensor.int32_data)?,
                7 => value.ints_into(&format!("{what}.int64_data"), &mut tensor.int64_data)?,
                8 => tensor.name = value.string(&format!("{what}.name"))?,
                9 => tensor.raw_data = value.bytes(&format!("{what}.raw_data"))?.to_vec(),
                10 => {
                    value.doubles_into(&format!("{what}.double_data"), &mut tensor.double_data)?
                }
                13 => tensor.has_external_data = true,
                14 => tensor.data_location = value.int(&format!("{what}.data_location"))?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(tensor)
    }
}

impl ValueInfo {
    fn decode(bytes: &[u8], what: &str) -> Result<Self, String> {
        let mut info = ValueInfo::default();
        fields(bytes, what, |field, value| {
            match field {
                1 => info.name = value.string(&format!("{what}.name"))?,
                2 => fields(value.bytes(what)?, what, |f, v| {
                    // TypeProto.tensor_type; other kinds (sequence, map) are left untyped.
                    if f == 1 {
                        fields(v.bytes(what)?, what, |f, v| {
                            match f {
                                1 => info.elem_type = int32(v, &format!("{what}.elem_type"))?,
                                2 => info.shape = Some(decode_shape(v.bytes(what)?, what)?),
                                _ => {}
                            }
                            Ok(())
                        })?;
                    }
                    Ok(())
                })?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(info)
    }
}

fn decode_shape(bytes: &[u8], what: &str) -> Result<Vec<Dim>, String> {
    let mut dims = Vec::new();
    fields(bytes, what, |field, value| {
        if field == 1 {
            let mut dim = Dim::Unknown;
            fields(value.bytes(what)?, what, |f, v| {
                match f {
                    1 => dim = Dim::Value(v.int(&format!("{what}.dim_value"))?),
                    2 => dim = Dim::Param(v.string(&format!("{what}.dim_param"))?),
                    _ => {}
                }
                Ok(())
            })?;
            dims.push(dim);
        }
        Ok(())
    })?;
    Ok(dims)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Model {
        Model {
            ir_version: 8,
            opset_import: vec![OpsetId {
                domain: String::new(),
                version: 17,
            }],
            producer_name: "dl-rs".into(),
            producer_version: "0.1.0".into(),
            doc_string: "doc".into(),
            graph: Some(Graph {
                node: vec![Node {
                    input: vec!["x".into(), "w".into(), String::new()],
                    output: vec!["y".into()],
                    name: "/fc/Gemm".into(),
                    op_type: "Gemm".into(),
                    domain: String::new(),
                    attribute: vec![
                        Attribute {
                            name: "transB".into(),
                            r#type: attribute_type::INT,
                            i: 1,
                            ..Attribute::default()
                        },
                        Attribute {
                            name: "alpha".into(),
                            r#type: attribute_type::FLOAT,
                            f: 0.5,
                            ..Attribute::default()
                        },
                        Attribute {
                            name: "perm".into(),
                            r#type: attribute_type::INTS,
                            ints: vec![1, -1],
                            ..Attribute::default()
                        },
                        Attribute {
                            name: "direction".into(),
                            r#type: attribute_type::STRING,
                            s: b"forward".to_vec(),
                            ..Attribute::default()
                        },
                        Attribute {
                            name: "value".into(),
                            r#type: attribute_type::TENSOR,
                            t: Some(Tensor {
                                dims: vec![2],
                                data_type: data_type::INT64,
                                int64_data: vec![-1, 3],
                                ..Tensor::default()
                            }),
                            ..Attribute::default()
                        },
                    ],
                }],
                name: "g".into(),
                initializer: vec![Tensor {
                    dims: vec![1, 2],
                    data_type: data_type::FLOAT,
                    name: "w".into(),
                    raw_data: [1.0f32.to_le_bytes(), 2.0f32.to_le_bytes()].concat(),
                    ..Tensor::default()
                }],
                doc_string: String::new(),
                input: vec![ValueInfo {
                    name: "x".into(),
                    elem_type: data_type::FLOAT,
                    shape: Some(vec![Dim::Param("batch".into()), Dim::Value(2)]),
                }],
                output: vec![ValueInfo {
                    name: "y".into(),
                    elem_type: data_type::FLOAT,
                    shape: Some(vec![Dim::Param("batch".into()), Dim::Unknown]),
                }],
            }),
        }
    }

    #[test]
    fn messages_round_trip() {
        let model = sample();
        assert_eq!(Model::decode(&model.encode()).unwrap(), model);
    }

    #[test]
    fn encoding_matches_protobuf_by_hand() {
        // OperatorSetIdProto { version: 17 } inside ModelProto field 8, after ir_version 8:
        // 08 08 (field 1 varint 8), 42 02 10 11 (field 8, 2 bytes: field 2 varint 17).
        let model = Model {
            ir_version: 8,
            opset_import: vec![OpsetId {
                domain: String::new(),
                version: 17,
            }],
            ..Model::default()
        };
        assert_eq!(model.encode(), [0x08, 0x08, 0x42, 0x02, 0x10, 0x11]);
    }

    #[test]
    fn unknown_fields_are_skipped_and_unpacked_repeats_accepted() {
        let mut w = Writer::default();
        w.int(99, 5); // unknown varint
        w.bytes(98, b"zz"); // unknown bytes
        w.float(97, 1.0); // unknown fixed32
        w.message(7, |g| {
            g.message(5, |t| {
                // dims written unpacked, one varint per element
                t.int(1, 2);
                t.int(1, 3);
                t.int(2, 1);
                t.float(4, 1.5); // unpacked float_data
                t.string(8, "w");
            });
        });
        let model = Model::decode(&w.buf).unwrap();
        let tensor = &model.graph.unwrap().initializer[0];
        assert_eq!(tensor.dims, [2, 3]);
        assert_eq!(tensor.float_data, [1.5]);
        assert_eq!(tensor.name, "w");
    }

    #[test]
    fn wrong_wire_types_name_the_field() {
        let mut w = Writer::default();
        w.message(7, |g| g.int(2, 1)); // graph.name as a varint
        let err = Model::decode(&w.buf).unwrap_err();
        assert!(err.contains("graph.name"), "{err}");
    }
}
