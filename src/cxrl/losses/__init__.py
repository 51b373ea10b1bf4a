"""cxrl.losses"""
