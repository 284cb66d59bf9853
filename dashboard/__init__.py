"""The Streamlit live dashboard over Gold: queries.py reads the warehouse, views.py draws, app.py lays out."""
