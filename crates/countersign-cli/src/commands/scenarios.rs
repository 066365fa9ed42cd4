//! The simulated agent's realistic requests.

use serde_json::{Value, json};

/// The requests the demo agent cycles through.
pub fn all() -> Vec<Value> {
    vec![
        json!({
            "type": "db.export", "resource": "postgres://prod-eu/customers", "environment": "prod",
            "parameters": {"rows": 184_212, "columns": ["id", "email", "country", "plan", "signup_at"],
                           "destination": "s3://analytics-exports/churn/2026-q4.parquet"},
            "justification": "Quarterly churn model refresh requested by the data team (DATA-1422).",
            "context": {"pipeline": "analytics-nightly", "run": 8812, "ticket": "DATA-1422"},
            "tags": ["pii"], "on_behalf_of": "dana@example.com"
        }),
        json!({
            "type": "iam.role.update", "resource": "arn:aws:iam::123456789012:role/deployer",
            "environment": "prod",
            "parameters": {"policy": "deployer-inline"},
            "justification": "Release 4.2 uploads build artefacts to the new bucket.",
            "context": {"pipeline": "release", "commit": "9f2c1e7"},
            "diff": {"format": "before-after", "language": "json",
                     "before": "{\n  \"Effect\": \"Allow\",\n  \"Action\": [\"s3:GetObject\"],\n  \"Resource\": \"arn:aws:s3:::artefacts/*\"\n}\n",
                     "after": "{\n  \"Effect\": \"Allow\",\n  \"Action\": [\"s3:GetObject\", \"s3:PutObject\"],\n  \"Resource\": \"arn:aws:s3:::artefacts/*\"\n}\n"},
            "tags": ["iam", "credentials-adjacent"]
        }),
        json!({
            "type": "k8s.deploy", "resource": "k8s://prod-eu-1/payments/checkout-api", "environment": "prod",
            "parameters": {"image": "registry.example.com/checkout-api:4.2.0", "replicas": 6},
            "justification": "Roll out checkout-api 4.2.0 (fixes PAY-881 double charge on retry).",
            "context": {"pipeline": "deploy", "change": "CHG-20931"},
            "diff": {"format": "unified", "language": "yaml",
                     "text": "--- a/deployment.yaml\n+++ b/deployment.yaml\n@@ -12,7 +12,7 @@ spec:\n-  replicas: 4\n+  replicas: 6\n   template:\n     spec:\n       containers:\n         - name: checkout-api\n-          image: registry.example.com/checkout-api:4.1.3\n+          image: registry.example.com/checkout-api:4.2.0\n"},
            "tags": ["prod-change"]
        }),
        json!({
            "type": "network.security_group.update", "resource": "aws://eu-west-1/sg-0a1b2c3d4e5f", "environment": "prod",
            "parameters": {"rule": "ingress tcp/22"},
            "justification": "Vendor needs SSH access for the storage migration tonight.",
            "context": {"ticket": "NET-417"},
            "diff": {"format": "unified", "language": "hcl",
                     "text": "--- a/sg.tf\n+++ b/sg.tf\n@@ -8,6 +8,6 @@ resource \"aws_security_group_rule\" \"ssh\" {\n   from_port   = 22\n   to_port     = 22\n   protocol    = \"tcp\"\n-  cidr_blocks = [\"10.0.0.0/8\"]\n+  cidr_blocks = [\"0.0.0.0/0\"]\n }\n"},
            "tags": ["network", "prod-change"]
        }),
        json!({
            "type": "flag.flip", "resource": "flags://checkout-v2", "environment": "staging",
            "parameters": {"flag": "checkout-v2", "from": false, "to": true, "rollout_percent": 25},
            "justification": "Start the 25% staging rollout of the new checkout.",
            "tags": ["feature-flag"]
        }),
        json!({
            "type": "db.table.read", "resource": "postgres://prod-eu/orders", "environment": "prod",
            "parameters": {"query": "SELECT count(*) FROM orders WHERE created_at > now() - interval '1 day'"},
            "justification": "Daily order volume for the ops dashboard.",
            "tags": []
        }),
    ]
}
