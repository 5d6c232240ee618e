"""Upload ingestion: turn an interaction file (csv, tsv, parquet, MovieLens, adjacency) into arrays."""

from app.ingestion.dataset import ParsedDataset
from app.ingestion.errors import IngestError, RowLimitExceeded
from app.ingestion.options import FORMATS, ParseOptions
from app.ingestion.parse import parse_file

__all__ = ["FORMATS", "IngestError", "ParseOptions", "ParsedDataset", "RowLimitExceeded", "parse_file"]
