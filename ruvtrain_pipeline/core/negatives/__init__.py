"""Hard negatives: training triplets (anchor request, positive agent, negative agent) built from the augmented set."""

from .triplets import TRIPLET_SCHEMA, TripletSettings, confusing_partners, template_triplets, triplet_report

__all__ = ["TRIPLET_SCHEMA", "TripletSettings", "confusing_partners", "template_triplets", "triplet_report"]
