"""The criteria language: validation, evaluation in code, and push-down to DynamoDB."""
