# Shared helpers of DIVE's policies: label normalisation, levels, input accessors, AAL.
package dive.common

import rego.v1

levels := {"UNCLASSIFIED": 0, "RESTRICTED": 1, "CONFIDENTIAL": 2, "SECRET": 3, "TOP_SECRET": 4}

level_names := ["UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET", "TOP_SECRET"]

# Fold a label like the Rust side (dive_core::label_key): upper case, accents and separators
# removed. data.dive.fold is generated from the equivalency tables.
label_key(label) := strings.replace_n(data.dive.fold, upper(label)) if is_string(label)

# A national label to a DIVE level name: the nation's own table, then NATO markings, then DIVE's
# canonical names. Undefined (never a guess) when the label is unknown.
level_of(country, label) := lvl if {
	lvl := data.dive.equivalency[country][label_key(label)]
} else := lvl if {
	lvl := data.dive.equivalency.NATO[label_key(label)]
} else := lvl if {
	lvl := data.dive.equivalency.DIVE[label_key(label)]
}

valid_country(c) if {
	is_string(c)
	data.dive.countries[c]
}

string_array(a) if {
	is_array(a)
	every x in a {
		is_string(x)
		x != ""
	}
}

# The operation requested: `action` may be a string or {"operation": …}.
operation := input.action if is_string(input.action)

operation := input.action.operation if is_string(input.action.operation)

# Authentication strength from acr ("1"–"3") and amr (methods). acr may arrive as a number.
acr := sprintf("%v", [input.context.acr]) if {
	not is_null(input.context.acr)
	not is_object(input.context.acr)
	not is_array(input.context.acr)
}

amr := input.context.amr if string_array(input.context.amr)

default amr_count := 0

amr_count := count(amr)

aal_from_acr := 3 if {
	acr == "3"
} else := 2 if {
	acr == "2"
} else := 1

aal_from_amr := 3 if {
	amr_count >= 2
	"hwk" in amr
} else := 2 if {
	amr_count >= 2
} else := 1

aal := max({aal_from_acr, aal_from_amr})

now_ns := time.parse_rfc3339_ns(input.context.currentTime) if {
	is_string(input.context.currentTime)
} else := time.now_ns()
