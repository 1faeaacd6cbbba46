# Unit tests of the access policy: run with `dive policy test policies/`.
package dive.authz_test

import rego.v1

import data.dive.authz

subject := {
	"authenticated": true,
	"uniqueID": "pierre.dubois@defense.gouv.fr",
	"clearance": "SECRET DÉFENSE",
	"countryOfAffiliation": "FRA",
	"acpCOI": ["NATO"],
	"organizationType": "MIL",
	"issuer": "https://localhost:8444/realms/dive-fra",
}

resource := {
	"resourceId": "doc-1",
	"classification": "SECRET",
	"releasabilityTo": ["USA", "FRA", "GBR"],
	"COI": ["NATO"],
	"coiOperator": "ALL",
	"creationDate": "2026-01-01T00:00:00Z",
	"encrypted": true,
}

context := {"acr": "2", "amr": ["pwd", "otp"], "currentTime": "2026-06-01T00:00:00Z"}

base := {"subject": subject, "action": "read", "resource": resource, "context": context}

test_allows_when_all_conditions_met if {
	d := authz.decision with input as base
	d.allow == true
	d.reason == "Access granted: all conditions are met"
	d.obligations[0].type == "kas_key_release"
}

test_denies_by_default_on_empty_input if {
	d := authz.decision with input as {}
	d.allow == false
	startswith(d.reason, "Not authenticated")
}

test_french_label_normalised_through_french_table if {
	d := authz.decision with input as base
	d.evaluation_details.subject.clearance == "SECRET"
}

test_insufficient_clearance if {
	d := authz.decision with input as object.union(base, {"resource": object.union(resource, {"classification": "TOP_SECRET"})})
	d.allow == false
	startswith(d.reason, "Insufficient clearance")
}

test_releasability if {
	d := authz.decision with input as object.union(base, {"resource": object.union(resource, {"releasabilityTo": ["USA"]})})
	startswith(d.reason, "Not releasable to your country")
}

test_coi_all_missing if {
	d := authz.decision with input as object.union(base, {"resource": object.union(resource, {"COI": ["NATO", "FVEY"]})})
	contains(d.reason, "you are missing [\"FVEY\"]")
}

test_coi_any_one_suffices if {
	d := authz.decision with input as object.union(base, {"resource": object.union(resource, {"COI": ["FVEY", "NATO"], "coiOperator": "ANY"})})
	d.allow
}

test_mfa_required_above_unclassified if {
	d := authz.decision with input as object.union(base, {"context": {"acr": "1", "amr": ["pwd"], "currentTime": "2026-06-01T00:00:00Z"}})
	startswith(d.reason, "Stronger authentication required")
	d.evaluation_details.authentication.aal == "AAL1"
}

test_embargo_with_skew if {
	# Created 4 minutes after "now": within the 5-minute skew, so allowed.
	d := authz.decision with input as object.union(base, {"resource": object.union(resource, {"creationDate": "2026-06-01T00:04:00Z"})})
	d.allow
	e := authz.decision with input as object.union(base, {"resource": object.union(resource, {"creationDate": "2026-06-01T00:06:00Z"})})
	startswith(e.reason, "Embargoed")
}

test_untrusted_issuer if {
	d := authz.decision with input as object.union(base, {"subject": object.union(subject, {"issuer": "https://evil.example"})})
	startswith(d.reason, "Untrusted token issuer")
}

test_federation_matrix if {
	d := authz.decision with input as base with data.dive.federation as {"USA": ["GBR"]}
	startswith(d.reason, "No federation agreement")
}

test_lower_case_country_is_invalid if {
	d := authz.decision with input as object.union(base, {"subject": object.union(subject, {"countryOfAffiliation": "fra"})})
	startswith(d.reason, "Invalid or missing attributes")
	contains(d.reason, "countryOfAffiliation")
}

test_unknown_clearance_label_is_not_guessed if {
	d := authz.decision with input as object.union(base, {"subject": object.union(subject, {"clearance": "ULTRA DÉFENSE"})})
	contains(d.reason, "not a known classification label of FRA")
}

test_priority_clearance_before_releasability if {
	r := object.union(resource, {"classification": "TOP_SECRET", "releasabilityTo": ["USA"]})
	d := authz.decision with input as object.union(base, {"resource": r})
	startswith(d.reason, "Insufficient clearance")
}
