"""cxrl.models"""
