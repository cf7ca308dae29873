"""The state shared by several watchdogs on DynamoDB (SPEC 4.5): watchdog/state/dynamodb/table.py."""
