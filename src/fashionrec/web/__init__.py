"""The gallery: browse the catalogue, click a product or drop a photo and see its neighbours (a v2 client of the transformer)."""
