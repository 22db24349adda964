"""Resolve the CloudFormation intrinsics moto leaves unapplied (substitutions, targets)."""

import re
from dataclasses import dataclass
from typing import Any

ACCOUNT_ID = "123456789012"
_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


@dataclass(frozen=True)
class Resource:
    logical_id: str
    type: str
    physical_id: str


class Resolver:
    def __init__(
        self, resources: dict[str, Resource], parameters: dict[str, str], region: str, stack_name: str = ""
    ) -> None:
        self.resources = resources
        self.parameters = parameters
        self.region = region
        self.stack_name = stack_name

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((name, argument),) = value.items()
            if name == "Ref":
                return self.ref(argument)
            if name == "Fn::GetAtt":
                logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self.get_att(logical_id, attribute)
            if name == "Fn::Sub":
                return self.sub(argument)
            if name == "Fn::Join":
                separator, items = argument
                return separator.join(str(item) for item in self.resolve(items))
        return {key: self.resolve(item) for key, item in value.items()}

    def ref(self, name: str) -> str:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack_name,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.resources[name].physical_id

    def get_att(self, logical_id: str, attribute: str) -> str:
        resource = self.resources[logical_id]
        if attribute != "Arn":
            raise ValueError(f"The local runner resolves only .Arn, not {logical_id}.{attribute}")
        return self.arn(resource)

    def arn(self, resource: Resource) -> str:
        name = resource.physical_id
        if name.startswith("arn:"):
            return name
        formats = {
            "AWS::Lambda::Function": f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{name}",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{self.region}:{ACCOUNT_ID}:table/{name}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT_ID}:role/{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:{name.rsplit('/', 1)[-1]}",
        }
        if resource.type not in formats:
            raise ValueError(f"The local runner cannot build the ARN of a {resource.type}")
        return formats[resource.type]

    def sub(self, argument: str | list[Any]) -> str:
        template, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
        values = {key: str(self.resolve(item)) for key, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in values:
                return values[name]
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return self.ref(name)

        return _SUB_VARIABLE.sub(replace, template)


def referenced_function(value: Any) -> str | None:
    """The logical id of the function an integration or authorizer URI points at."""
    if isinstance(value, dict):
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return str(target[0] if isinstance(target, list) else target.split(".", 1)[0])
        for item in value.values():
            found = referenced_function(item)
            if found:
                return found
    if isinstance(value, list):
        for item in value:
            found = referenced_function(item)
            if found:
                return found
    if isinstance(value, str):
        match = re.search(r"\$\{(\w+)\.Arn\}", value)
        if match:
            return match.group(1)
    return None
