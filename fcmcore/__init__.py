"""fcmcore: feature coding for machines — split a detector, code its features, measure."""

__version__ = "0.1.0"
