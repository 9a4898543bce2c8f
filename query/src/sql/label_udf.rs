//! `label(labels, name)`: one label's value from a `labels` map column (`samples`, `series`,
//! rule tables grouped `without`), or null when the series has no such label — Prometheus's
//! empty label, as a SQL null.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
struct Label {
    signature: Signature,
}

/// The function, to register in a session.
pub(crate) fn label() -> ScalarUDF {
    ScalarUDF::from(Label { signature: Signature::any(2, Volatility::Immutable) })
}

impl ScalarUDFImpl for Label {
    fn name(&self) -> &str {
        "label"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args {
            [DataType::Map(..), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View] => {
                Ok(DataType::Utf8)
            }
            _ => plan_err!("label(labels, name) takes a labels map column and a label name, not {args:?}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [maps, names] = arrays.as_slice() else {
            return exec_err!("label(labels, name) takes two arguments");
        };
        let names = arrow::compute::cast(names, &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let Some(maps) = maps.as_map_opt() else {
            return exec_err!("label(labels, name): the first argument is not a map");
        };
        let keys = arrow::compute::cast(maps.keys(), &DataType::Utf8)?;
        let values = arrow::compute::cast(maps.values(), &DataType::Utf8)?;
        let (keys, values) = (keys.as_string::<i32>(), values.as_string::<i32>());
        let offsets = maps.value_offsets();
        let mut out = StringBuilder::with_capacity(maps.len(), maps.len() * 8);
        for row in 0..maps.len() {
            if maps.is_null(row) || names.is_null(row) {
                out.append_null();
                continue;
            }
            let wanted = names.value(row);
            let (from, to) = (offsets[row] as usize, offsets[row + 1] as usize);
            match (from..to).find(|i| !keys.is_null(*i) && keys.value(*i) == wanted) {
                Some(i) if !values.is_null(i) => out.append_value(values.value(i)),
                _ => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}
