#!/usr/bin/env python3
"""Validates rendered Kubernetes manifests without a cluster.

Every built-in kind is held to the Kubernetes OpenAPI schemas kubernetes-validate bundles, in
strict mode (an unknown field is an error, as `kubectl apply --validate=strict` would make it),
for each Kubernetes version given. The operators' custom resources (CloudNativePG, Strimzi,
the MongoDB community operator) are held to the openAPIV3Schema of their CustomResourceDefinitions
when those are given (--crds DIR), strictly too: a field the schema does not name is an error,
except where the schema says unknown fields are kept (x-kubernetes-preserve-unknown-fields).
A kind found in neither is an error.

Usage: validate.py [--crds DIR] [-k VERSION]… FILE.yaml…
"""

import argparse
import copy
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml


def strict(schema):
    """The schema with every object that names its properties closed to others."""
    schema = copy.deepcopy(schema)

    def close(node):
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


def load_crds(directory):
    """(apiVersion, kind) -> schema, from every CustomResourceDefinition under directory."""
    schemas = {}
    for path in sorted(Path(directory).rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if schema:
                    schema = strict(schema)
                    # apiVersion, kind and metadata are the API server's to check.
                    schema.setdefault("properties", {}).update(
                        {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
                    )
                    schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crds", help="folder of the operators' CustomResourceDefinitions")
    parser.add_argument("-k", "--kubernetes-version", action="append", dest="versions")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    versions = args.versions or [kubernetes_validate.latest_version()]
    crds = load_crds(args.crds) if args.crds else {}

    errors, builtin, custom = [], 0, 0
    for path in args.files:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if not doc:
                continue
            name = f"{Path(path).stem}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key in crds:
                custom += 1
                for error in jsonschema.Draft7Validator(crds[key]).iter_errors(doc):
                    errors.append(f"{name} ({key[0]}): {'.'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}")
                continue
            builtin += 1
            for version in versions:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as error:
                    errors.append(f"{name} (Kubernetes {version}): {'.'.join(map(str, error.path)) or '(top)'}: {error.message}")
                except kubernetes_validate.SchemaNotFoundError:
                    errors.append(f"{name}: {key[0]} {key[1]} is neither a Kubernetes kind nor in a given CRD")
                    break

    for error in errors:
        print(error)
    summary = (
        f"{builtin} built-in resources against Kubernetes {', '.join(versions)} (strict), "
        f"{custom} custom resources against their CRDs"
    )
    print(f"validate: {summary}: {len(errors)} errors" if errors else f"validate: {summary}: valid")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
