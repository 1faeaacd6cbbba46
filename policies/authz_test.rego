# Unit tests of the access policy: run with `dive policy test policies/`.
#
# The policy decides on the normalised input (docs/policy.md, "Normalised input"), so the tests
# do too: a French SECRET DÉFENSE user has already been normalised to level SECRET, rank 3.
# `dive policy eval --normalized --input FILE` prints the normalised form of any raw input.
package dive.authz_test

import rego.v1

import data.dive.authz

# 2026-06-01T00:00:00Z
now := 1780272000000000000

subject := {
	"authenticated": true,
	"uniqueID": "pierre.dubois@defense.gouv.fr",
	"clearance": "SECRET",
	"rank": 3,
	"clearanceOriginal": "SECRET DÉFENSE",
	"clearanceCountry": "FRA",
	"countryOfAffiliation": "FRA",
	"acpCOI": ["NATO"],
	"organizationType": "MIL",
	"issuer": "https://localhost:8444/realms/dive-fra",
	"roles": [],
}

resource := {
	"resourceId": "doc-1",
	"classification": "SECRET",
	"rank": 3,
	"originalClassification": null,
	"originalCountry": null,
	"releasabilityTo": ["USA", "FRA", "GBR"],
	"COI": ["NATO"],
	"coiOperator": "ALL",
	"caveats": [],
	"creationDate": "2026-01-01T00:00:00Z",
	"creationTime": 1767225600000000000,
	"encrypted": true,
	"releasableToIndustry": false,
}

facts := {
	"attributeErrors": [],
	"coiHeld": ["NATO"],
	"coiMissing": [],
	"coherenceViolations": [],
	"uncoveredCountries": [],
}

base := {
	"subject": subject,
	"action": "read",
	"resource": resource,
	"context": {"aal": 2, "now": now, "integrityVerified": null},
	"facts": facts,
}

with_subject(patch) := object.union(base, {"subject": object.union(subject, patch)})

with_resource(patch) := object.union(base, {"resource": object.union(resource, patch)})

with_facts(patch) := object.union(base, {"facts": object.union(facts, patch)})

test_allows_when_all_conditions_met if {
	d := authz.decision with input as base
	d.allow == true
	d.reason == "Access granted: all conditions are met"
	d.obligations[0].type == "kas_key_release"
	d.obligations[0].resourceId == "doc-1"
	d.evaluation_details.authentication == {"aal": "AAL2", "required": "AAL2"}
}

test_every_check_reported_once if {
	d := authz.decision with input as base
	count(d.evaluation_details.checks) == 14
	d.evaluation_details.checks.coherence_violations == 0
	d.evaluation_details.subject.clearance == "SECRET"
}

test_no_obligation_for_plain_documents if {
	d := authz.decision with input as with_resource({"encrypted": false})
	d.allow
	d.obligations == []
}

test_not_authenticated if {
	d := authz.decision with input as with_subject({"authenticated": false})
	not d.allow
	d.reason == "Not authenticated: sign in and try again"
	d.obligations == []
}

test_attribute_errors_are_listed if {
	d := authz.decision with input as with_facts({"attributeErrors": ["subject.uniqueID is missing or empty", "x"]})
	d.reason == "Invalid or missing attributes: subject.uniqueID is missing or empty; x"
}

test_insufficient_clearance if {
	d := authz.decision with input as with_resource({"classification": "TOP_SECRET", "rank": 4})
	not d.allow
	d.reason == "Insufficient clearance: your clearance SECRET is below the document's classification TOP_SECRET"
}

test_unknown_levels_clear_nothing if {
	d := authz.decision with input as with_subject({"clearance": null, "rank": -1})
	d.evaluation_details.checks.clearance == false
	e := authz.decision with input as with_resource({"classification": null, "rank": 5})
	e.evaluation_details.checks.clearance == false
}

test_mfa_required_above_unclassified if {
	d := authz.decision with input as object.union(base, {"context": {"aal": 1, "now": now, "integrityVerified": null}})
	startswith(d.reason, "Stronger authentication required: SECRET documents need AAL2 and you signed in at AAL1")
	d.evaluation_details.authentication.aal == "AAL1"
}

test_aal3_for_top_secret_when_required if {
	i := object.union(with_subject({"clearance": "TOP_SECRET", "rank": 4}), {"resource": object.union(resource, {"classification": "TOP_SECRET", "rank": 4})})
	settings := object.union(data.dive.settings, {"requireAal3ForTopSecret": true})
	d := authz.decision with input as i with data.dive.settings as settings
	contains(d.reason, "need AAL3 and you signed in at AAL2; sign in again with a hardware security key (AAL3)")
	e := authz.decision with input as i
	e.allow
}

test_upload_must_be_releasable_to_own_country if {
	i := object.union(with_resource({"releasabilityTo": ["USA"]}), {"action": "upload"})
	d := authz.decision with input as i
	d.reason == "Upload refused: the document must be releasable to your own country FRA"
}

test_releasability if {
	d := authz.decision with input as with_resource({"releasabilityTo": ["USA"]})
	startswith(d.reason, "Not releasable to your country: FRA is not in")
}

test_coi_all_missing if {
	i := object.union(with_resource({"COI": ["NATO", "FVEY"]}), {"facts": object.union(facts, {"coiMissing": ["FVEY"]})})
	d := authz.decision with input as i
	contains(d.reason, "you are missing [\"FVEY\"]")
}

test_coi_any_one_suffices if {
	i := object.union(with_resource({"COI": ["FVEY", "NATO"], "coiOperator": "ANY"}), {"facts": object.union(facts, {"coiMissing": ["FVEY"]})})
	d := authz.decision with input as i
	d.allow
}

test_us_only_needs_exactly_us_only if {
	i := object.union(with_resource({"COI": ["US-ONLY"]}), {"facts": object.union(facts, {"coiHeld": [], "coiMissing": ["US-ONLY"]})})
	d := authz.decision with input as i
	d.reason == "Community of interest: a US-ONLY document needs your COI tags to be exactly [US-ONLY]"
}

test_invalid_operator_never_passes if {
	d := authz.decision with input as with_resource({"COI": [], "coiOperator": "SOME"})
	d.evaluation_details.checks.coi == false
}

test_embargo_with_skew if {
	# Created 4 minutes after "now": within the 5-minute skew, so allowed.
	d := authz.decision with input as with_resource({"creationTime": now + 240000000000})
	d.allow
	e := authz.decision with input as with_resource({"creationDate": "2026-06-01T00:06:00Z", "creationTime": now + 360000000000})
	e.reason == "Embargoed: the document is not available before 2026-06-01T00:06:00Z"
}

test_no_creation_date_is_no_embargo if {
	d := authz.decision with input as with_resource({"creationDate": null, "creationTime": null})
	d.allow
}

test_failed_integrity_report if {
	d := authz.decision with input as object.union(base, {"context": {"aal": 2, "now": now, "integrityVerified": false}})
	startswith(d.reason, "Integrity check failed")
}

test_industry_cap if {
	d := authz.decision with input as object.union(with_subject({"organizationType": "INDUSTRY"}), {"resource": object.union(resource, {"releasableToIndustry": true})})
	d.reason == "Industry access: the document's classification SECRET is above the industry cap CONFIDENTIAL for FRA"
	e := authz.decision with input as with_subject({"organizationType": "INDUSTRY"})
	e.reason == "Industry access: the document is not releasable to industry"
}

test_incoherent_label if {
	d := authz.decision with input as with_facts({"coherenceViolations": ["COI Zeta is not in the COI registry"]})
	d.reason == "Incoherent security label (COI Zeta is not in the COI registry); ask the originator to correct the label"
	d.evaluation_details.checks.coherence_violations == 1
}

test_strict_mode_counts_uncovered_countries if {
	i := with_facts({"uncoveredCountries": ["FRA"]})
	d := authz.decision with input as i
	d.allow
	settings := object.union(data.dive.settings, {"strictCoherence": true})
	e := authz.decision with input as i with data.dive.settings as settings
	contains(e.reason, "strict mode: releasable country FRA belongs to none of the label's COIs")
}

test_untrusted_issuer if {
	d := authz.decision with input as with_subject({"issuer": "https://evil.example"})
	d.reason == "Untrusted token issuer \"https://evil.example\": this instance does not accept tokens from it"
}

test_federation_matrix if {
	d := authz.decision with input as base with data.dive.federation as {"USA": ["GBR"]}
	d.reason == "No federation agreement: instance FRA is not federated with USA"
}

test_priority_clearance_before_releasability if {
	d := authz.decision with input as with_resource({"classification": "TOP_SECRET", "rank": 4, "releasabilityTo": ["USA"]})
	startswith(d.reason, "Insufficient clearance")
}

test_priority_authentication_before_everything if {
	i := object.union(with_subject({"authenticated": false, "issuer": null}), {"facts": object.union(facts, {"attributeErrors": ["x"]})})
	d := authz.decision with input as i
	startswith(d.reason, "Not authenticated")
}
