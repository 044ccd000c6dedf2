//! The mechanical part of every publisher: a snapshot's numeric fields, read through its
//! `Serialize` impl and each written to the series named after it.
//!
//! The rule: the field `f` of a snapshot published under the prefix `backstop_pool` is the
//! series `backstop_pool_f_total` (a counter) or `backstop_pool_f` (a gauge), whichever
//! [`SERIES`](super::SERIES) lists; a field with neither is not published. Numbers and
//! `Option`s of them are read; text (durations serialize as text), flags, sequences, maps,
//! enums and nested structs are not. A publisher writes everything else itself with
//! [`values!`](super::values): a series named otherwise, a split by a label, a unit to
//! convert, a value computed from several fields.

use super::catalogue;
use super::write::{Labels, Value};
use serde::ser::{Impossible, Serialize, SerializeStruct, Serializer};
use std::fmt;

impl Labels {
    /// Writes each numeric field of `stats`, a struct, to its series by the rule above.
    pub(crate) fn publish_fields(&self, prefix: &str, stats: &impl Serialize) {
        self.publish_fields_except(prefix, stats, &[]);
    }

    /// [`publish_fields`](Self::publish_fields) but for the fields in `except`: those whose
    /// series by the rule the publisher writes itself (split by a label, or computed), so
    /// that no series is written twice.
    pub(crate) fn publish_fields_except(
        &self,
        prefix: &str,
        stats: &impl Serialize,
        except: &[&str],
    ) {
        let fields = Fields {
            labels: self,
            prefix,
            except,
            excepted: 0,
        };
        let read = stats.serialize(Read(Some(fields)));
        debug_assert!(read.is_ok(), "{prefix}: only a struct has fields");
    }
}

/// Where a snapshot's fields go: the series under `prefix`, with these labels.
struct Fields<'a> {
    labels: &'a Labels,
    prefix: &'a str,
    except: &'a [&'a str],
    /// The fields met that `except` names: all of them, unless `except` has a typo.
    excepted: usize,
}

impl SerializeStruct for Fields<'_> {
    type Ok = Value;
    type Error = fmt::Error;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        field: &'static str,
        value: &T,
    ) -> Result<(), fmt::Error> {
        if self.except.contains(&field) {
            self.excepted += 1;
        } else if let Some(series) = catalogue::named_after(self.prefix, field)
            && let Ok(value) = value.serialize(Read(None))
        {
            self.labels.publish(&[(series, value)]);
        }
        Ok(())
    }

    fn end(self) -> Result<Value, fmt::Error> {
        debug_assert_eq!(
            self.excepted,
            self.except.len(),
            "{}: {:?} names a field the snapshot lacks",
            self.prefix,
            self.except
        );
        Ok(Value::Absent)
    }
}

/// Reads a value through its `Serialize` impl: a number or an `Option` of one as a
/// [`Value`]; a struct only at the top, where it knows where the fields go, so nested
/// structs are not visited. Anything else is refused at once with `fmt::Error` (serde's
/// ready-made error): it is simply not published.
struct Read<'a>(Option<Fields<'a>>);

/// Serializer methods that refuse their value, each `name(argument types) -> the associated
/// type it would return`; `name<T>` for those generic over the value.
macro_rules! refuse {
    ($($method:ident $(<$value:ident>)? ($($argument:ty),*) -> $returns:ident;)*) => {$(
        fn $method $(<$value: ?Sized + Serialize>)? (self, $(_: $argument),*)
            -> Result<Self::$returns, fmt::Error>
        {
            Err(fmt::Error)
        }
    )*};
}

impl<'a> Serializer for Read<'a> {
    type Ok = Value;
    type Error = fmt::Error;
    type SerializeSeq = Impossible<Value, fmt::Error>;
    type SerializeTuple = Impossible<Value, fmt::Error>;
    type SerializeTupleStruct = Impossible<Value, fmt::Error>;
    type SerializeTupleVariant = Impossible<Value, fmt::Error>;
    type SerializeMap = Impossible<Value, fmt::Error>;
    type SerializeStruct = Fields<'a>;
    type SerializeStructVariant = Impossible<Value, fmt::Error>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Fields<'a>, fmt::Error> {
        self.0.ok_or(fmt::Error)
    }

    fn serialize_u32(self, value: u32) -> Result<Value, fmt::Error> {
        Ok(value.into())
    }

    /// `usize` serializes as `u64`.
    fn serialize_u64(self, value: u64) -> Result<Value, fmt::Error> {
        Ok(value.into())
    }

    fn serialize_f64(self, value: f64) -> Result<Value, fmt::Error> {
        Ok(value.into())
    }

    fn serialize_none(self) -> Result<Value, fmt::Error> {
        Ok(Value::Absent)
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<Value, fmt::Error> {
        value.serialize(self)
    }

    refuse! {
        serialize_bool(bool) -> Ok;
        serialize_i8(i8) -> Ok;
        serialize_i16(i16) -> Ok;
        serialize_i32(i32) -> Ok;
        serialize_i64(i64) -> Ok;
        serialize_u8(u8) -> Ok;
        serialize_u16(u16) -> Ok;
        serialize_f32(f32) -> Ok;
        serialize_char(char) -> Ok;
        serialize_str(&str) -> Ok;
        serialize_bytes(&[u8]) -> Ok;
        serialize_unit() -> Ok;
        serialize_unit_struct(&'static str) -> Ok;
        serialize_unit_variant(&'static str, u32, &'static str) -> Ok;
        serialize_newtype_struct<T>(&'static str, &T) -> Ok;
        serialize_newtype_variant<T>(&'static str, u32, &'static str, &T) -> Ok;
        serialize_seq(Option<usize>) -> SerializeSeq;
        serialize_tuple(usize) -> SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> SerializeTupleVariant;
        serialize_map(Option<usize>) -> SerializeMap;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> SerializeStructVariant;
    }
}
