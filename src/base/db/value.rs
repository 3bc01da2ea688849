//! Values crossing the SQL boundary, the same for both backends: what a parameter binds as
//! ([`ToSql`]) and what a column reads back as ([`FromSql`]). The set is SQLite's five storage
//! classes; the PostgreSQL side converts to and from its column types (see `postgres.rs`).

use super::Error;

/// A borrowed SQL value: a parameter about to be bound, or a column of a row being read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// An owned SQL value: a PostgreSQL row's column, or a parameter sent to the connection's thread.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Integer(v) => ValueRef::Integer(*v),
            Value::Real(v) => ValueRef::Real(*v),
            Value::Text(s) => ValueRef::Text(s),
            Value::Blob(b) => ValueRef::Blob(b),
        }
    }
}

impl From<ValueRef<'_>> for Value {
    fn from(v: ValueRef<'_>) -> Self {
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::Integer(v),
            ValueRef::Real(v) => Value::Real(v),
            ValueRef::Text(s) => Value::Text(s.to_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

/// What a Rust value binds as.
pub trait ToSql {
    fn to_sql(&self) -> Result<ValueRef<'_>, Error>;
}

/// What a Rust value reads from.
pub trait FromSql: Sized {
    fn column_result(value: ValueRef<'_>) -> Result<Self, Error>;
}

fn mismatch(want: &'static str, got: ValueRef<'_>) -> Error {
    Error::Conversion(format!("cannot read {got:?} as {want}"))
}

impl<T: ToSql + ?Sized> ToSql for &T {
    fn to_sql(&self) -> Result<ValueRef<'_>, Error> {
        (**self).to_sql()
    }
}

impl<T: ToSql + ?Sized> ToSql for Box<T> {
    fn to_sql(&self) -> Result<ValueRef<'_>, Error> {
        (**self).to_sql()
    }
}

impl<T: ToSql> ToSql for Option<T> {
    fn to_sql(&self) -> Result<ValueRef<'_>, Error> {
        match self {
            Some(v) => v.to_sql(),
            None => Ok(ValueRef::Null),
        }
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> Result<ValueRef<'_>, Error> {
        Ok(self.as_ref())
    }
}

impl ToSql for ValueRef<'_> {
    fn to_sql(&self) -> Result<ValueRef<'_>, Error> {
        Ok(*self)
    }
}

impl ToSql for str {
    fn to_sql(&self) -> Result<ValueRef<'_>, Error> {
        Ok(ValueRef::Text(self))
    }
}

impl ToSql for String {
    fn to_sql(&self) -> Result<ValueRef<'_>, Error> {
        Ok(ValueRef::Text(self))
    }
}

impl ToSql for [u8] {
    fn to_sql(&self) -> Result<ValueRef<'_>, Error> {
        Ok(ValueRef::Blob(self))
    }
}

impl ToSql for Vec<u8> {
    fn to_sql(&self) -> Result<ValueRef<'_>, Error> {
        Ok(ValueRef::Blob(self))
    }
}

impl ToSql for bool {
    fn to_sql(&self) -> Result<ValueRef<'_>, Error> {
        Ok(ValueRef::Integer(i64::from(*self)))
    }
}

impl ToSql for f64 {
    fn to_sql(&self) -> Result<ValueRef<'_>, Error> {
        Ok(ValueRef::Real(*self))
    }
}

impl ToSql for f32 {
    fn to_sql(&self) -> Result<ValueRef<'_>, Error> {
        Ok(ValueRef::Real(f64::from(*self)))
    }
}

macro_rules! integer {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> Result<ValueRef<'_>, Error> {
                i64::try_from(*self)
                    .map(ValueRef::Integer)
                    .map_err(|_| Error::Conversion(format!("{} does not fit a 64-bit integer", self)))
            }
        }

        impl FromSql for $t {
            fn column_result(value: ValueRef<'_>) -> Result<Self, Error> {
                match value {
                    ValueRef::Integer(v) => <$t>::try_from(v)
                        .map_err(|_| Error::Conversion(format!("{v} does not fit {}", stringify!($t)))),
                    // PostgreSQL's numeric (a sum of integers) arrives as a whole real.
                    ValueRef::Real(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => <$t>::try_from(v as i64)
                        .map_err(|_| Error::Conversion(format!("{v} does not fit {}", stringify!($t)))),
                    other => Err(mismatch(stringify!($t), other)),
                }
            }
        }
    )*};
}

integer!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

impl FromSql for f64 {
    fn column_result(value: ValueRef<'_>) -> Result<Self, Error> {
        match value {
            ValueRef::Real(v) => Ok(v),
            ValueRef::Integer(v) => Ok(v as f64),
            other => Err(mismatch("f64", other)),
        }
    }
}

impl FromSql for f32 {
    fn column_result(value: ValueRef<'_>) -> Result<Self, Error> {
        f64::column_result(value).map(|v| v as f32)
    }
}

impl FromSql for bool {
    fn column_result(value: ValueRef<'_>) -> Result<Self, Error> {
        match value {
            ValueRef::Integer(v) => Ok(v != 0),
            other => Err(mismatch("bool", other)),
        }
    }
}

impl FromSql for String {
    fn column_result(value: ValueRef<'_>) -> Result<Self, Error> {
        match value {
            ValueRef::Text(s) => Ok(s.to_owned()),
            other => Err(mismatch("text", other)),
        }
    }
}

impl FromSql for Vec<u8> {
    fn column_result(value: ValueRef<'_>) -> Result<Self, Error> {
        match value {
            ValueRef::Blob(b) => Ok(b.to_vec()),
            ValueRef::Text(s) => Ok(s.as_bytes().to_vec()),
            other => Err(mismatch("blob", other)),
        }
    }
}

impl FromSql for Value {
    fn column_result(value: ValueRef<'_>) -> Result<Self, Error> {
        Ok(value.into())
    }
}

impl<T: FromSql> FromSql for Option<T> {
    fn column_result(value: ValueRef<'_>) -> Result<Self, Error> {
        match value {
            ValueRef::Null => Ok(None),
            other => T::column_result(other).map(Some),
        }
    }
}
