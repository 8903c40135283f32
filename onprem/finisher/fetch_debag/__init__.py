"""fetch_debag"""
