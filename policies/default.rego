# Countersign's default policy: what the demo runs, and a starting point for your own.
#
# Input:  input.action    the agent's request (type, resource, environment, parameters,
#                         justification, context, diff, tags, on_behalf_of)
#         input.requester the agent identity that submitted it
# Output: data.countersign.decision, one object:
#         {"outcome": "allow" | "deny" | "require_approval", "reason": "...",
#          and for require_approval: "quorum", "groups", "ttl_seconds",
#          "require_hardware_key", "quick_approve"}
# Anything else (an error, no decision, a malformed one) denies the request.
package countersign

import rego.v1

is_prod if input.action.environment in {"prod", "production"}

is_read if {
	some suffix in {".read", ".get", ".list", ".describe"}
	endswith(input.action.type, suffix)
}

has_tag(t) if t in input.action.tags

# A statement the gate brokers (type sql.<kind>) carries the tags of the classified columns it
# touches, set by the gate's configuration, and says whether it asks for them unmasked.
is_sql if startswith(input.action.type, "sql.")

reveals if input.action.parameters.reveal_classified == true

# Flat refusals come first.
decision := {"outcome": "deny", "reason": "exporting credentials is never allowed"} if {
	startswith(input.action.type, "db.export")
	has_tag("credentials")
} else := {"outcome": "deny", "reason": "statements touching credentials are never brokered"} if {
	is_sql
	has_tag("credentials")
} else := {
	"outcome": "require_approval",
	"reason": "reading personal data unmasked needs two approvers from security",
	"quorum": 2, "groups": ["security"], "ttl_seconds": 900,
	"require_hardware_key": false, "quick_approve": false,
} if {
	is_sql
	reveals
	has_tag("pii")
} else := {
	"outcome": "require_approval",
	"reason": "production export of personal data needs two approvers from security",
	"quorum": 2, "groups": ["security"], "ttl_seconds": 900,
	"require_hardware_key": false, "quick_approve": false,
} if {
	startswith(input.action.type, "db.export")
	is_prod
	has_tag("pii")
} else := {
	"outcome": "require_approval",
	"reason": "IAM changes in production need one approver from security",
	"quorum": 1, "groups": ["security"], "ttl_seconds": 900,
	"require_hardware_key": false, "quick_approve": false,
} if {
	startswith(input.action.type, "iam.")
	is_prod
} else := {"outcome": "allow", "reason": "read-only actions are allowed"} if {
	is_read
} else := {"outcome": "allow", "reason": "queries with classified values masked are allowed"} if {
	input.action.type == "sql.select"
	not reveals
	not is_prod
} else := {
	"outcome": "require_approval",
	"reason": "feature flags may be approved straight from the notification",
	"quorum": 1, "groups": [], "ttl_seconds": 600,
	"require_hardware_key": false, "quick_approve": true,
} if {
	startswith(input.action.type, "flag.")
} else := {
	"outcome": "require_approval",
	"reason": "production changes need one approver",
	"quorum": 1, "groups": [], "ttl_seconds": 900,
	"require_hardware_key": false, "quick_approve": false,
} if {
	is_prod
} else := {
	"outcome": "require_approval",
	"reason": "every privileged action needs one approver",
	"quorum": 1, "groups": [], "ttl_seconds": 1800,
	"require_hardware_key": false, "quick_approve": false,
}
