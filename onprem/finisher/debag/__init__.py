"""debag"""
