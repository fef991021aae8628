// A tap on a map moves the query slider to the tapped row. Args: query (the slider).
query.value = Math.min(Math.max(Math.round(cb_obj.y), query.start), query.end);
