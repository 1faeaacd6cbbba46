# DIVE's access decision: default deny; allow only when all twelve checks pass. The reason for a
# deny is the most important failing check (see `reason`), phrased so that a user can act on it.
package dive.authz

import rego.v1

import data.dive.common

subject := input.subject if is_object(input.subject)

resource := input.resource if is_object(input.resource)

default settings := {}

settings := data.dive.settings

# ---------------------------------------------------------------- normalised attributes

subject_country := subject.countryOfAffiliation if common.valid_country(subject.countryOfAffiliation)

# The nation whose table defines the subject's clearance label.
clearance_country := subject.clearanceCountry if {
	common.valid_country(subject.clearanceCountry)
} else := subject_country if {
	not subject.clearanceCountry
}

# Through the issuing nation's table when the original label is known; it must then agree with
# the normalised `clearance`, if that is given too.
subject_level := common.level_of(clearance_country, subject.clearanceOriginal) if {
	is_string(subject.clearanceOriginal)
} else := common.level_of(clearance_country, subject.clearance)

resource_level := common.level_of(resource.originalCountry, resource.originalClassification) if {
	is_string(resource.originalClassification)
	common.valid_country(resource.originalCountry)
} else := common.level_of("NATO", resource.classification) if {
	not resource.originalClassification
}

subject_rank := common.levels[subject_level]

resource_rank := common.levels[resource_level]

default subject_cois := []

subject_cois := subject.acpCOI if common.string_array(subject.acpCOI)

default resource_cois := []

resource_cois := resource.COI if common.string_array(resource.COI)

default coi_operator := "ALL"

coi_operator := resource.coiOperator if not is_null(resource.coiOperator)

default caveats := []

caveats := resource.caveats if common.string_array(resource.caveats)

default releasability := []

releasability := resource.releasabilityTo if is_array(resource.releasabilityTo)

issuer := subject.issuer if is_string(subject.issuer)

creation_ns := time.parse_rfc3339_ns(resource.creationDate) if is_string(resource.creationDate)

# ---------------------------------------------------------------- 2. attribute validity

attribute_errors contains "subject is missing or not an object" if not subject

attribute_errors contains "resource is missing or not an object" if not resource

attribute_errors contains "subject.uniqueID is missing or empty" if {
	subject
	not valid_unique_id
}

valid_unique_id if {
	is_string(subject.uniqueID)
	trim_space(subject.uniqueID) != ""
}

attribute_errors contains msg if {
	subject
	not common.valid_country(subject.countryOfAffiliation)
	msg := sprintf("subject.countryOfAffiliation %v is not a valid ISO 3166-1 alpha-3 code (upper case, e.g. USA)", [json.marshal(object.get(subject, "countryOfAffiliation", null))])
}

attribute_errors contains msg if {
	subject.clearanceCountry
	not common.valid_country(subject.clearanceCountry)
	msg := sprintf("subject.clearanceCountry %v is not a valid ISO 3166-1 alpha-3 code", [json.marshal(subject.clearanceCountry)])
}

attribute_errors contains "subject.clearance is missing" if {
	subject
	not subject.clearance
	not subject.clearanceOriginal
}

attribute_errors contains msg if {
	label := object.get(subject, "clearanceOriginal", object.get(subject, "clearance", null))
	label != null
	clearance_country
	not subject_level
	msg := sprintf("subject clearance %v is not a known classification label of %v", [json.marshal(label), clearance_country])
}

attribute_errors contains msg if {
	is_string(subject.clearanceOriginal)
	is_string(subject.clearance)
	given := common.level_of("NATO", subject.clearance)
	given != subject_level
	msg := sprintf("subject clearance %v does not match the national label %v (%v)", [subject.clearance, subject.clearanceOriginal, subject_level])
}

attribute_errors contains "subject.acpCOI must be an array of COI tags" if {
	subject.acpCOI
	not common.string_array(subject.acpCOI)
}

attribute_errors contains msg if {
	subject
	not subject.organizationType in {"GOV", "MIL", "INDUSTRY"}
	msg := sprintf("subject.organizationType %v must be GOV, MIL or INDUSTRY", [json.marshal(object.get(subject, "organizationType", null))])
}

attribute_errors contains "resource.classification is missing" if {
	resource
	not resource.classification
	not resource.originalClassification
}

attribute_errors contains msg if {
	resource
	label := object.get(resource, "originalClassification", object.get(resource, "classification", null))
	label != null
	not resource_level
	msg := sprintf("resource classification %v is not a known classification label%v", [json.marshal(label), original_country_suffix])
}

original_country_suffix := sprintf(" of %v", [resource.originalCountry]) if {
	common.valid_country(resource.originalCountry)
} else := ""

attribute_errors contains msg if {
	resource.originalClassification
	not common.valid_country(resource.originalCountry)
	msg := sprintf("resource.originalCountry %v must be a valid ISO 3166-1 alpha-3 code when originalClassification is set", [json.marshal(object.get(resource, "originalCountry", null))])
}

attribute_errors contains msg if {
	is_string(resource.originalClassification)
	is_string(resource.classification)
	given := common.level_of("NATO", resource.classification)
	given != resource_level
	msg := sprintf("resource classification %v does not match its original marking %v of %v (%v)", [resource.classification, resource.originalClassification, resource.originalCountry, resource_level])
}

attribute_errors contains "resource.releasabilityTo must be an array of country codes" if {
	resource
	not is_array(resource.releasabilityTo)
}

attribute_errors contains msg if {
	some c in releasability
	not common.valid_country(c)
	msg := sprintf("resource.releasabilityTo contains %v, not a valid ISO 3166-1 alpha-3 code", [json.marshal(c)])
}

attribute_errors contains "resource.COI must be an array of COI tags" if {
	resource.COI
	not common.string_array(resource.COI)
}

attribute_errors contains msg if {
	not coi_operator in {"ALL", "ANY"}
	msg := sprintf("resource.coiOperator %v is invalid: expected ALL or ANY", [json.marshal(coi_operator)])
}

attribute_errors contains msg if {
	resource.creationDate
	not creation_ns
	msg := sprintf("resource.creationDate %v is not an RFC 3339 timestamp", [json.marshal(resource.creationDate)])
}

attribute_errors contains msg if {
	input.context.currentTime
	not time.parse_rfc3339_ns(input.context.currentTime)
	msg := sprintf("context.currentTime %v is not an RFC 3339 timestamp", [json.marshal(input.context.currentTime)])
}

# ---------------------------------------------------------------- the checks

default check_authenticated := false

check_authenticated if subject.authenticated == true

default check_attributes := false

check_attributes if attributes_ok

# The fast path: every attribute valid, in one rule body. The messages (attribute_errors) are
# only built when this fails, for the reason.
default attributes_ok := false

attributes_ok if {
	valid_unique_id
	subject_country
	clearance_country
	subject_level
	not clearance_mismatch
	optional_string_array(object.get(subject, "acpCOI", null))
	subject.organizationType in {"GOV", "MIL", "INDUSTRY"}
	resource_level
	not original_mismatch
	is_array(resource.releasabilityTo)
	every c in resource.releasabilityTo {
		common.valid_country(c)
	}
	optional_string_array(object.get(resource, "COI", null))
	coi_operator in {"ALL", "ANY"}
	valid_times
}

optional_string_array(v) if is_null(v)

optional_string_array(v) if common.string_array(v)

clearance_mismatch if {
	is_string(subject.clearanceOriginal)
	is_string(subject.clearance)
	common.level_of("NATO", subject.clearance) != subject_level
}

original_mismatch if {
	is_string(resource.originalClassification)
	is_string(resource.classification)
	common.level_of("NATO", resource.classification) != resource_level
}

default valid_times := false

valid_times if {
	valid_creation_date
	valid_current_time
}

valid_creation_date if not resource.creationDate

valid_creation_date if creation_ns

valid_current_time if not input.context.currentTime

valid_current_time if time.parse_rfc3339_ns(input.context.currentTime)

default check_clearance := false

check_clearance if subject_rank >= resource_rank

default check_releasability := false

check_releasability if subject_country in releasability

default check_coi := false

check_coi if {
	count(resource_cois) == 0
	coi_operator in {"ALL", "ANY"}
}

check_coi if {
	not "US-ONLY" in resource_cois
	coi_operator == "ALL"
	count(resource_cois) > 0
	every c in resource_cois {
		c in subject_cois
	}
}

check_coi if {
	not "US-ONLY" in resource_cois
	coi_operator == "ANY"
	some c in resource_cois
	c in subject_cois
}

check_coi if {
	"US-ONLY" in resource_cois
	coi_operator in {"ALL", "ANY"}
	subject_cois == ["US-ONLY"]
}

embargo_skew_ns := object.get(settings, "embargoSkewSeconds", 300) * 1000000000

default check_embargo := false

check_embargo if not resource.creationDate

check_embargo if common.now_ns >= creation_ns - embargo_skew_ns

# Integrity is checked when the caller reports it (ZTDF payload and policy binding verified).
default check_integrity := false

check_integrity if not has_integrity_report

check_integrity if input.context.integrityVerified == true

has_integrity_report if not is_null(object.get(object.get(input, "context", {}), "integrityVerified", null))

default check_upload := false

check_upload if common.operation != "upload"

check_upload if not common.operation

check_upload if {
	common.operation == "upload"
	subject_country in releasability
	resource_rank <= subject_rank
}

required_aal := 3 if {
	resource_rank == 4
	object.get(settings, "requireAal3ForTopSecret", false) == true
} else := 2 if {
	resource_rank > 0
} else := 1

default check_authentication_strength := false

check_authentication_strength if common.aal >= required_aal

default industry_caps := {}

industry_caps := data.dive.industry_caps

industry_cap := cap if {
	cap := industry_caps.caps[subject_country]
} else := object.get(industry_caps, "default", "UNCLASSIFIED")

default check_industry := false

check_industry if subject.organizationType != "INDUSTRY"

check_industry if {
	subject.organizationType == "INDUSTRY"
	resource.releasableToIndustry == true
	resource_rank <= common.levels[industry_cap]
}

coherence_violations contains msg if {
	"US-ONLY" in resource_cois
	some other in resource_cois
	other != "US-ONLY"
	msg := sprintf("US-ONLY cannot be combined with another COI (%v)", [other])
}

coherence_violations contains msg if {
	some pair in data.dive.coi.mutuallyExclusive
	not "US-ONLY" in pair
	pair[0] in resource_cois
	pair[1] in resource_cois
	msg := sprintf("COIs %v and %v are mutually exclusive", pair)
}

coherence_violations contains "NOFORN requires COI exactly US-ONLY and releasability exactly USA" if {
	"NOFORN" in caveats
	not noforn_ok
}

noforn_ok if {
	resource_cois == ["US-ONLY"]
	releasability == ["USA"]
}

coherence_violations contains msg if {
	coi_operator == "ANY"
	some pair in data.dive.coi.subsets
	pair[0] in resource_cois
	pair[1] in resource_cois
	msg := sprintf("under ANY, %v is a subset of %v: listing both widens access to all of %v", [pair[0], pair[1], pair[1]])
}

coherence_violations contains msg if {
	some tag in resource_cois
	not data.dive.coi.cois[tag]
	msg := sprintf("COI %v is not in the COI registry", [tag])
}

coherence_violations contains msg if {
	object.get(settings, "strictCoherence", false) == true
	some c in releasability
	not covered_by_coi(c)
	msg := sprintf("strict mode: releasable country %v belongs to none of the label's COIs", [c])
}

covered_by_coi(c) if {
	some tag in resource_cois
	c in data.dive.coi.cois[tag].members
}

default check_coherence := false

check_coherence if coherence_violation_count == 0

# The common case, a single registered COI without NOFORN outside strict mode, is coherent
# without building the list of violations.
coherence_violation_count := 0 if {
	count(resource_cois) <= 1
	every tag in resource_cois {
		data.dive.coi.cois[tag]
	}
	not "NOFORN" in caveats
	object.get(settings, "strictCoherence", false) != true
} else := count(coherence_violations)

trusted_issuer := data.dive.trusted_issuers[issuer]

default check_trusted_issuer := false

check_trusted_issuer if trusted_issuer

this_instance := object.get(settings, "instance", "")

default check_federation := false

check_federation if trusted_issuer.instance == this_instance

check_federation if trusted_issuer.instance in data.dive.federation[this_instance]

# ---------------------------------------------------------------- decision

default allow := false

allow if {
	check_authenticated
	check_attributes
	check_clearance
	check_authentication_strength
	check_upload
	check_releasability
	check_coi
	check_embargo
	check_integrity
	check_industry
	check_coherence
	check_trusted_issuer
	check_federation
}

reason := "Not authenticated: sign in and try again" if {
	not check_authenticated
} else := msg if {
	not check_attributes
	msg := sprintf("Invalid or missing attributes: %v", [concat("; ", sort(attribute_errors))])
} else := msg if {
	not check_clearance
	msg := sprintf("Insufficient clearance: your clearance %v is below the document's classification %v", [subject_level, resource_level])
} else := msg if {
	not check_authentication_strength
	msg := sprintf("Stronger authentication required: %v documents need AAL%v and you signed in at AAL%v; sign in again with %v", [resource_level, required_aal, common.aal, aal_hint])
} else := msg if {
	not check_upload
	msg := upload_reason
} else := msg if {
	not check_releasability
	msg := sprintf("Not releasable to your country: %v is not in the document's releasability list %v", [object.get(subject, "countryOfAffiliation", "?"), releasability])
} else := msg if {
	not check_coi
	msg := coi_reason
} else := msg if {
	not check_embargo
	msg := sprintf("Embargoed: the document is not available before %v", [resource.creationDate])
} else := "Integrity check failed: the document's content or policy binding has been altered; do not use it and report it" if {
	not check_integrity
} else := msg if {
	not check_industry
	msg := industry_reason
} else := msg if {
	not check_coherence
	msg := sprintf("Incoherent security label (%v); ask the originator to correct the label", [concat("; ", sort(coherence_violations))])
} else := msg if {
	not check_trusted_issuer
	msg := sprintf("Untrusted token issuer %v: this instance does not accept tokens from it", [json.marshal(object.get(subject, "issuer", null))])
} else := msg if {
	not check_federation
	msg := sprintf("No federation agreement: instance %v is not federated with %v", [trusted_issuer.instance, this_instance])
} else := "Access granted: all conditions are met"

aal_hint := "a hardware security key (AAL3)" if {
	required_aal == 3
} else := "a second factor such as a one-time code (AAL2)"

upload_reason := sprintf("Upload refused: the document must be releasable to your own country %v", [object.get(subject, "countryOfAffiliation", "?")]) if {
	not subject_country in releasability
} else := sprintf("Upload refused: the document's classification %v is above your clearance %v", [resource_level, subject_level])

coi_reason := "Community of interest: a US-ONLY document needs your COI tags to be exactly [US-ONLY]" if {
	"US-ONLY" in resource_cois
} else := sprintf("Community of interest: the document requires at least one of %v; your COIs are %v", [resource_cois, subject_cois]) if {
	coi_operator == "ANY"
} else := sprintf("Community of interest: the document requires all of %v; you are missing %v", [resource_cois, missing_cois])

missing_cois := [c | some c in resource_cois; not c in subject_cois]

industry_reason := "Industry access: the document is not releasable to industry" if {
	resource.releasableToIndustry != true
} else := sprintf("Industry access: the document's classification %v is above the industry cap %v for %v", [resource_level, industry_cap, subject_country])

obligations := [{
	"type": "kas_key_release",
	"resourceId": object.get(resource, "resourceId", null),
	"reason": "encrypted ZTDF document: the KAS releases the data key only after it re-evaluates this policy",
}] if {
	allow
	resource.encrypted == true
} else := []

decision := {
	"allow": allow,
	"reason": reason,
	"obligations": obligations,
	"evaluation_details": {
		"checks": {
			"authenticated": check_authenticated,
			"attributes": check_attributes,
			"clearance": check_clearance,
			"authentication_strength": check_authentication_strength,
			"upload": check_upload,
			"releasability": check_releasability,
			"coi": check_coi,
			"embargo": check_embargo,
			"integrity": check_integrity,
			"industry": check_industry,
			"coherence": check_coherence,
			"coherence_violations": coherence_violation_count,
			"trusted_issuer": check_trusted_issuer,
			"federation": check_federation,
		},
		"subject": {
			"uniqueID": object.get(subject_or_empty, "uniqueID", null),
			"clearance": subject_level_or_null,
			"clearanceOriginal": object.get(subject_or_empty, "clearanceOriginal", object.get(subject_or_empty, "clearance", null)),
			"clearanceCountry": clearance_country_or_null,
			"countryOfAffiliation": object.get(subject_or_empty, "countryOfAffiliation", null),
			"acpCOI": subject_cois,
			"organizationType": object.get(subject_or_empty, "organizationType", null),
		},
		"resource": {
			"resourceId": object.get(resource_or_empty, "resourceId", null),
			"classification": resource_level_or_null,
			"originalClassification": object.get(resource_or_empty, "originalClassification", null),
			"originalCountry": object.get(resource_or_empty, "originalCountry", null),
			"releasabilityTo": releasability,
			"COI": resource_cois,
			"coiOperator": coi_operator,
			"caveats": caveats,
			"encrypted": object.get(resource_or_empty, "encrypted", false),
		},
		"authentication": {"aal": sprintf("AAL%v", [common.aal]), "required": sprintf("AAL%v", [required_aal])},
	},
}

subject_or_empty := subject if {
	subject
} else := {}

resource_or_empty := resource if {
	resource
} else := {}

default subject_level_or_null := null

subject_level_or_null := subject_level

default clearance_country_or_null := null

clearance_country_or_null := clearance_country

default resource_level_or_null := null

resource_level_or_null := resource_level
