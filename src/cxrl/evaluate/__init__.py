"""cxrl.evaluate"""
