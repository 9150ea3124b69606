//! JSON Schema compatibility: Confluent's `JsonSchema.isBackwardCompatible` over the diff in
//! [`super::diff`], with Confluent's `Difference` messages.

use super::diff::{LENIENT_EXTRA, STRICT, differences};
use super::model::Model;

fn describe(t: &str, path: &str, reader: &str, writer: &str) -> String {
    let d = match t {
        "MAXIMUM_ADDED"
        | "MINIMUM_ADDED"
        | "EXCLUSIVE_MAXIMUM_ADDED"
        | "EXCLUSIVE_MINIMUM_ADDED"
        | "MULTIPLE_OF_ADDED"
        | "MAX_LENGTH_ADDED"
        | "MIN_LENGTH_ADDED"
        | "PATTERN_ADDED"
        | "REQUIRED_ATTRIBUTE_ADDED"
        | "MAX_PROPERTIES_ADDED"
        | "MIN_PROPERTIES_ADDED"
        | "DEPENDENCY_ARRAY_ADDED"
        | "DEPENDENCY_SCHEMA_ADDED"
        | "MAX_ITEMS_ADDED"
        | "MIN_ITEMS_ADDED"
        | "MAX_CONTAINS_ADDED"
        | "MIN_CONTAINS_ADDED"
        | "UNIQUE_ITEMS_ADDED"
        | "ADDITIONAL_ITEMS_REMOVED"
        | "ADDITIONAL_PROPERTIES_REMOVED"
        | "UNEVALUATED_PROPERTIES_REMOVED"
        | "UNEVALUATED_ITEMS_REMOVED" => {
            format!(
                "The keyword at path '{path}' in the {reader} schema is not present in the {writer} schema"
            )
        }
        "MIN_LENGTH_INCREASED"
        | "MINIMUM_INCREASED"
        | "EXCLUSIVE_MINIMUM_INCREASED"
        | "MIN_PROPERTIES_INCREASED"
        | "MULTIPLE_OF_EXPANDED"
        | "MIN_ITEMS_INCREASED"
        | "MIN_CONTAINS_INCREASED" => {
            format!(
                "The value at path '{path}' in the {reader} schema is more than its value in the {writer} schema"
            )
        }
        "MAX_LENGTH_DECREASED"
        | "MAXIMUM_DECREASED"
        | "MAX_ITEMS_DECREASED"
        | "MAX_CONTAINS_DECREASED"
        | "EXCLUSIVE_MAXIMUM_DECREASED"
        | "MAX_PROPERTIES_DECREASED" => {
            format!(
                "The value at path '{path}' in the {reader} schema is less than its value in the {writer} schema"
            )
        }
        "PATTERN_CHANGED" | "MULTIPLE_OF_CHANGED" | "DEPENDENCY_ARRAY_CHANGED" => {
            format!(
                "The value at path '{path}' is different between the {reader} and {writer} schema"
            )
        }
        "ADDITIONAL_ITEMS_NARROWED"
        | "ENUM_ARRAY_NARROWED"
        | "SUM_TYPE_NARROWED"
        | "ADDITIONAL_PROPERTIES_NARROWED"
        | "UNEVALUATED_PROPERTIES_NARROWED"
        | "UNEVALUATED_ITEMS_NARROWED" => format!(
            "An array or combined type at path '{path}' has fewer elements in the {reader} schema than the {writer} schema"
        ),
        "DEPENDENCY_ARRAY_EXTENDED"
        | "PRODUCT_TYPE_EXTENDED"
        | "SUM_TYPE_EXTENDED"
        | "NOT_TYPE_EXTENDED" => format!(
            "An array or combined type at path '{path}' has more elements in the {reader} schema than the {writer} schema"
        ),
        "TYPE_CHANGED"
        | "TYPE_NARROWED"
        | "COMBINED_TYPE_CHANGED"
        | "COMBINED_TYPE_SUBSCHEMAS_CHANGED"
        | "ENUM_ARRAY_CHANGED" => {
            format!(
                "A type at path '{path}' is different between the {reader} schema and the {writer} schema"
            )
        }
        "REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"
        | "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_OPEN_CONTENT_MODEL"
        | "OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"
        | "ITEM_ADDED_TO_OPEN_CONTENT_MODEL" => format!(
            "The {reader} schema has an open content model and has a property or item at path '{path}' which is missing in the {writer} schema"
        ),
        "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL" => format!(
            "The {reader} schema has an unopen content model and has a required property at path '{path}' which is missing in the {writer} schema"
        ),
        "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL" | "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL" => {
            format!(
                "The {reader} has a closed content model and is missing a property or item present at path '{path}' in the {writer} schema"
            )
        }
        "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
        | "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL" => format!(
            "A property or item is missing in the {reader} schema but present at path '{path}' in the {writer} schema and is not covered by its partially open content model"
        ),
        "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
        | "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL" => format!(
            "The {reader} schema has a property or item at path '{path}' which is missing in the {writer} schema and is not covered by its partially open content model"
        ),
        _ => String::new(),
    };
    format!("{{errorType:\"{t}\", description:\"{d}'}}")
}

fn is_compatible_type(t: &str, lenient: bool) -> bool {
    STRICT.contains(&t) || (lenient && LENIENT_EXTRA.contains(&t))
}

/// Whether `reader` can read data written with `writer` (Confluent's
/// `JsonSchema.isBackwardCompatible`): the diff from writer to reader, incompatible changes only.
pub(crate) fn check(
    reader: &Model,
    writer: &Model,
    lenient: bool,
    reader_label: &str,
    writer_label: &str,
) -> Vec<String> {
    match differences(writer, reader, lenient) {
        Ok(diffs) => diffs
            .into_iter()
            .filter(|(t, _)| !is_compatible_type(t, lenient))
            .map(|(t, p)| describe(t, &p, reader_label, writer_label))
            .collect(),
        Err(e) => vec![format!(
            "Unexpected exception during compatibility check: {e}"
        )],
    }
}

/// Every difference as `"TYPE #/path"` (Confluent's test notation).
#[cfg(test)]
pub(crate) fn difference_list(original: &Model, update: &Model, lenient: bool) -> Vec<String> {
    differences(original, update, lenient)
        .map(|d| d.into_iter().map(|(t, p)| format!("{t} {p}")).collect())
        .unwrap_or_else(|e| vec![e])
}
