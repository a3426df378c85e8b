"""Where finished work goes: tracks into a media library (names, paths, ID3 tags, files,
fetching audio) and events out as signed webhooks.
"""
