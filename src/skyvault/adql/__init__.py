"""ADQL 2.1: parse, check against catalogue metadata, translate to DuckDB SQL."""
